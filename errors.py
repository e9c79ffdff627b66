"""One error type for bad node input, so every message names the node, the input and the fix."""


class AIDInputError(ValueError):
    """Raised for input a user can fix; ComfyUI shows the message on the node."""

    def __init__(self, node: str, input_name: str, problem: str, fix: str):
        self.node = node
        self.input_name = input_name
        super().__init__(f"{node}: input '{input_name}': {problem} Fix: {fix}")
