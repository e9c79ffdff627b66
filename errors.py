"""What a user reads: one error type for bad node input (naming the node, the input and the fix), and the
plural helper that keeps counts in messages grammatical ("1 frame", "2 frames")."""


class AIDInputError(ValueError):
    """Raised for input a user can fix; ComfyUI shows the message on the node."""

    def __init__(self, node: str, input_name: str, problem: str, fix: str):
        self.node = node
        self.input_name = input_name
        super().__init__(f"{node}: input '{input_name}': {problem} Fix: {fix}")


def plural(count, noun: str, plural_form: str | None = None) -> str:
    """'1 frame', '0 frames', '7 frames'; `plural_form` for irregular nouns ('1 batch', '2 batches')."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
