"""The one error the agent's hardware control raises, shared by the tools runner and every board family."""


class PowerError(Exception):
    """The power mode cannot be set, verified or restored; ``remedy`` says how to fix it."""

    def __init__(self, message, remedy=None):
        Exception.__init__(self, message + ("\n" + remedy if remedy else ""))
        self.message = message
        self.remedy = remedy
