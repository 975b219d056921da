"""Stand-in for PyAV on the device run: nothing there decodes media (audio comes from a .npz)."""


class AudioResampler:
    def __init__(self, *a: object, **k: object) -> None:
        raise RuntimeError("PyAV stub")


class AudioFrame:
    pass


def open(*a: object, **k: object) -> None:  # noqa: A001 - PyAV's own name
    raise RuntimeError("PyAV stub")
