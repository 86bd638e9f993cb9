"""DomainError: a refused use case with a stable code and a message a person can read."""


class DomainError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
