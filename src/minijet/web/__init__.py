"""The daemons' web pages and Prometheus metrics, served over HTTP by each daemon itself
(server.py), rendered on the server from the daemon's own state: no JavaScript, no CDN."""
