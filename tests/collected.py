"""An Output for driving runner.py's stage functions in tests: keeps what it is given (what a
local runner's output would see) instead of writing it anywhere."""


class Collected:
    def __init__(self):
        self.pairs = []
        self.finished = self.aborted = False

    def write_all(self, pairs):
        self.pairs.extend(pairs)

    def finish(self, progress):
        self.finished = True

    def abort(self):
        self.aborted = True
