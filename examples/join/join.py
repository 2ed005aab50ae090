"""Join: each order with the user who placed it (a reduce-side inner join on the user id).

    jetshell run examples/join/join.py UserOrders USERS ORDERS OUTPUT [--tasks N]

USERS holds `user_id,name,country` lines and ORDERS `order_id,user_id,item,amount` lines
(CSV without quoting; lines starting with # are comments), as in examples/join/users.csv and
orders.csv. The output has one line per order whose user exists:
`user_id<TAB>name<TAB>country<TAB>order_id<TAB>item<TAB>amount`. Orders of unknown users and
users without orders are left out (an inner join). Each side is read and keyed by user id in
its own map stage; the join stage gets both sides' records of a user id together.
"""
from minijet import JobBuilderJob, Param, context


def data_lines(offset, line):
    return bool(line.strip()) and not line.startswith("#")


def user(offset, line):
    user_id, name, country = line.split(",")
    return user_id, (name, country)


def order(offset, line):
    order_id, user_id, item, amount = line.split(",")
    return user_id, (order_id, item, amount)


def joined(user_id, pair):
    (name, country), (order_id, item, amount) = pair
    context.counter("join", "orders_joined").increment()
    return user_id, "\t".join((name, country, order_id, item, amount))


class UserOrders(JobBuilderJob):
    """Join ORDERS with USERS on the user id into OUTPUT."""

    params = [
        Param("users", help="users: user_id,name,country lines (DFS file or directory)"),
        Param("orders", help="orders: order_id,user_id,item,amount lines"),
        Param("output", help="output directory in the DFS; it must not exist"),
        Param("--tasks", int, default=2, metavar="N", help="join tasks (part files)"),
    ]

    def build_job(self, builder):
        users = builder.read(self.users, name="users").filter(data_lines).map(user)
        orders = builder.read(self.orders, name="orders").filter(data_lines).map(order)
        users.join(orders, tasks=self.tasks, name="join").map(joined).write(self.output)
