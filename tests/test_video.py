"""AID Frames to Video: clip assembly, encoders (decoded back), safe file names, VIDEO output, a headless run."""
from __future__ import annotations

import itertools
import json
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from aid_pack.errors import AIDInputError
from aid_pack.nodes.video import HAS_VIDEO, AIDFramesToVideo
from aid_pack.video import (FORMATS, LOOP_MODES, assemble, encode, even_size, fps_fraction, frame_order,
                            frame_times, to_rgb8)

HOLDS = ((0, 0), (2, 0), (0, 3), (2, 3))


def distinct_frames(count: int = 5, height: int = 24, width: int = 32) -> torch.Tensor:
    """Frames that differ clearly from each other (colour ramps plus a moving bar), IMAGE [N, H, W, 3]."""
    frames = torch.zeros(count, height, width, 3)
    for f in range(count):
        frames[f, ..., 0] = f / max(count - 1, 1)
        frames[f, ..., 1] = torch.linspace(0, 1, width)
        frames[f, ..., 2] = 1 - f / max(count - 1, 1)
        frames[f, :, (f * width) // count:((f * width) // count) + 3] = 1.0
    return frames


def expected_length(count, loop, hold_first, hold_last):
    back = {"forward": 0, "ping-pong": count, "ping-pong (no repeated ends)": max(count - 2, 0)}[loop]
    return count + hold_first + hold_last + back


def save(**overrides):
    """Run the node with small defaults; returns (result dict, path of the written file)."""
    inputs = dict(images=distinct_frames(), filename_prefix="aid_test/clip", format="mp4 (h264)", fps=12.0,
                  loop="forward", hold_first=0, hold_last=0, reverse=False, odd_size="pad", crf=19, webp_quality=90)
    inputs.update(overrides)
    result = AIDFramesToVideo().save(**inputs)
    import folder_paths

    (item,) = result["ui"]["images"]
    assert item["type"] == "output"
    return result, os.path.join(folder_paths.get_output_directory(), item["subfolder"], item["filename"])


def decode_video(path):
    """(frames uint8 [N, H, W, 3], average rate, metadata) decoded with PyAV."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, stream.average_rate, dict(container.metadata)


def decode_animation(path):
    """[(frame uint8 [H, W, 3], duration ms)] decoded with Pillow."""
    image = Image.open(path)
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        image.load()
        frames.append((np.asarray(image.convert("RGB")), image.info["duration"]))
    return frames, image


# ---------------------------------------------------------------- assembly


def test_frame_order_examples():
    assert frame_order(4) == [0, 1, 2, 3]
    assert frame_order(4, "ping-pong") == [0, 1, 2, 3, 3, 2, 1, 0]
    assert frame_order(4, "ping-pong (no repeated ends)") == [0, 1, 2, 3, 2, 1]
    assert frame_order(4, "forward", 2, 1) == [0, 0, 0, 1, 2, 3, 3]
    assert frame_order(4, "ping-pong (no repeated ends)", 1, 2, reverse=True) == [3, 3, 2, 1, 0, 0, 0, 1, 2]
    assert frame_order(1, "ping-pong (no repeated ends)") == [0]
    assert frame_order(2, "ping-pong (no repeated ends)") == [0, 1]


@pytest.mark.parametrize("loop", LOOP_MODES)
@pytest.mark.parametrize("hold_first, hold_last", HOLDS)
@pytest.mark.parametrize("reverse", (False, True))
def test_frame_order_length_and_ends(loop, hold_first, hold_last, reverse):
    order = frame_order(6, loop, hold_first, hold_last, reverse)
    assert len(order) == expected_length(6, loop, hold_first, hold_last)
    first, last = (5, 0) if reverse else (0, 5)
    assert order[:hold_first + 1] == [first] * (hold_first + 1)
    assert order[5 + hold_first:6 + hold_first + hold_last] == [last] * (hold_last + 1)
    if loop == "ping-pong (no repeated ends)":  # loops without showing a frame twice in a row at the seam
        assert order[-1] != order[0] and all(a != b for a, b in zip(order[hold_first + 6 + hold_last:], order[1:]))


def test_frame_order_rejects_bad_arguments():
    for kwargs in (dict(count=0), dict(count=3, loop="bounce"), dict(count=3, hold_first=-1)):
        with pytest.raises(ValueError):
            frame_order(**kwargs)


def test_assemble_indexes_the_batch():
    frames = distinct_frames(3)
    clip = assemble(frames, "ping-pong", hold_last=1)
    assert torch.equal(clip, frames[[0, 1, 2, 2, 2, 1, 0]])


def test_even_size_pad_and_crop():
    frames = distinct_frames(2, height=25, width=33)
    padded, note = even_size(frames, "pad")
    assert padded.shape == (2, 26, 34, 3) and "padded 33x25 to 34x26" in note
    assert torch.equal(padded[:, 25], padded[:, 24]) and torch.equal(padded[:, :, 33], padded[:, :, 32])
    cropped, note = even_size(frames, "crop")
    assert cropped.shape == (2, 24, 32, 3) and "cropped 33x25 to 32x24" in note
    same, note = even_size(distinct_frames(2), "pad")
    assert same.shape == (2, 24, 32, 3) and note == ""
    with pytest.raises(ValueError):
        even_size(torch.zeros(1, 1, 5, 3), "crop")


@pytest.mark.parametrize("fps, fraction", [(12, Fraction(12)), (29.97, Fraction(2997, 100)),
                                           (23.976, Fraction(2997, 125)), (0.5, Fraction(1, 2)),
                                           (30000 / 1001, Fraction(30000, 1001))])
def test_fps_fraction_round_trips(fps, fraction):
    assert fps_fraction(fps) == fraction
    assert float(fps_fraction(fps)) == pytest.approx(fps, abs=1e-9)


def test_frame_times_are_rounded_start_times():
    assert frame_times(3, 12, 100) == [0, 8, 17, 25]
    assert frame_times(24, 12, 1000)[-1] == 2000


def test_to_rgb8_rounds_and_drops_alpha():
    image = torch.tensor([[[[0.0, 0.5, 1.0, 0.3]]]])
    assert to_rgb8(image).tolist() == [[[[0, 128, 255]]]]


# ---------------------------------------------------------------- encoded files, decoded back


@pytest.mark.parametrize("video_format", ["mp4 (h264)", "webm (vp9)"])
@pytest.mark.parametrize("loop", LOOP_MODES)
@pytest.mark.parametrize("hold_first, hold_last", HOLDS)
def test_video_files_decode_with_expected_frames_size_and_rate(comfy_base, video_format, loop, hold_first,
                                                                 hold_last):
    frames = distinct_frames(5)
    result, path = save(images=frames, format=video_format, loop=loop, hold_first=hold_first,
                        hold_last=hold_last, fps=12.0)
    assert path.endswith("." + FORMATS[video_format].extension) and os.path.isfile(path)
    decoded, rate, _ = decode_video(path)
    order = frame_order(5, loop, hold_first, hold_last)
    assert decoded.shape == (expected_length(5, loop, hold_first, hold_last), 24, 32, 3)
    assert rate == Fraction(12)
    # lossy, but each decoded frame is closest to the source frame it should show
    sources = to_rgb8(frames).astype(np.float32)
    for clip_index, source_index in enumerate(order):
        errors = np.abs(sources - decoded[clip_index].astype(np.float32)).mean(axis=(1, 2, 3))
        assert int(errors.argmin()) == source_index
    assert result["result"][0].shape[0] == len(order)


@pytest.mark.parametrize("video_format, ticks_per_second", [("gif", 100), ("webp", 1000)])
@pytest.mark.parametrize("loop", LOOP_MODES)
@pytest.mark.parametrize("hold_first, hold_last", HOLDS)
def test_animated_images_decode_with_expected_frames_and_timing(comfy_base, video_format, ticks_per_second, loop,
                                                                  hold_first, hold_last):
    frames = distinct_frames(5, height=25, width=33)  # odd sizes are fine for gif and webp
    fps = 12.0
    _, path = save(images=frames, format=video_format, loop=loop, hold_first=hold_first, hold_last=hold_last,
                   fps=fps)
    decoded, image = decode_animation(path)
    order = frame_order(5, loop, hold_first, hold_last)
    assert image.size == (33, 25)
    assert round(sum(d for _, d in decoded) * fps / 1000) == len(order) == expected_length(5, loop, hold_first,
                                                                                           hold_last)
    # a run of identical frames (a hold) is stored once, its duration the sum of the run's frame durations
    runs = [len(list(group)) for _, group in itertools.groupby(order)]
    starts = [0, *itertools.accumulate(runs)]
    times = frame_times(len(order), fps, ticks_per_second)
    unit_ms = 1000 // ticks_per_second
    assert [d for _, d in decoded] == [(times[s + r] - times[s]) * unit_ms for s, r in zip(starts, runs)]
    sources = to_rgb8(frames).astype(np.float32)
    for (pixels, _), start in zip(decoded, starts):
        errors = np.abs(sources - pixels.astype(np.float32)).mean(axis=(1, 2, 3))
        assert int(errors.argmin()) == order[start]


def test_fractional_fps_round_trips_through_mp4(comfy_base):
    _, path = save(fps=29.97)
    assert decode_video(path)[1] == Fraction(2997, 100)


@pytest.mark.parametrize("reverse", (False, True))
def test_reverse_plays_last_frame_first(comfy_base, reverse):
    frames = distinct_frames(4)
    _, path = save(images=frames, format="webm (vp9)", reverse=reverse, loop="ping-pong (no repeated ends)")
    decoded = decode_video(path)[0]
    sources = to_rgb8(frames).astype(np.float32)
    first = int(np.abs(sources - decoded[0].astype(np.float32)).mean(axis=(1, 2, 3)).argmin())
    assert first == (3 if reverse else 0) and len(decoded) == 6


@pytest.mark.parametrize("odd_size, size", [("pad", (34, 26)), ("crop", (32, 24))])
@pytest.mark.parametrize("video_format", ["mp4 (h264)", "webm (vp9)"])
def test_odd_sizes_are_padded_or_cropped_and_said(comfy_base, odd_size, size, video_format):
    result, path = save(images=distinct_frames(3, height=25, width=33), format=video_format, odd_size=odd_size)
    decoded = decode_video(path)[0]
    assert (decoded.shape[2], decoded.shape[1]) == size
    assert ("padded" if odd_size == "pad" else "cropped") in result["ui"]["text"][0]
    assert result["result"][0].shape[1:3] == (size[1], size[0])


def test_metadata_is_embedded_like_core(comfy_base):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    workflow = {"nodes": [], "links": []}
    _, path = save(prompt=prompt, extra_pnginfo={"workflow": workflow})
    metadata = decode_video(path)[2]
    assert json.loads(metadata["prompt"]) == prompt and json.loads(metadata["workflow"]) == workflow
    _, path = save(format="webp", prompt=prompt, extra_pnginfo={"workflow": workflow})
    exif = Image.open(path).getexif()
    assert exif[0x0110] == "prompt:" + json.dumps(prompt) and exif[0x010F] == "workflow:" + json.dumps(workflow)
    _, path = save(format="gif", prompt=prompt)
    assert json.loads(Image.open(path).info["comment"]) == {"prompt": prompt}


def test_metadata_is_left_out_when_disabled(comfy_base, monkeypatch):
    from comfy.cli_args import args

    monkeypatch.setattr(args, "disable_metadata", True)
    _, path = save(prompt={"1": {}}, extra_pnginfo={"workflow": {}})
    assert "prompt" not in decode_video(path)[2]


# ---------------------------------------------------------------- file names stay inside output/


@pytest.mark.parametrize("prefix", ["../../evil/x", "../escape", "/tmp/aid_absolute/x", "sub/../../../evil"])
def test_prefix_cannot_leave_the_output_folder(comfy_base, prefix):
    output = str(comfy_base / "output")
    target = os.path.normpath(os.path.join(output, prefix))  # where a naive join would have written
    folder, name = os.path.split(target)

    def written():
        if not os.path.isdir(folder):
            return None
        return sorted(entry for entry in os.listdir(folder) if entry.startswith(name))

    before = written()
    with pytest.raises(AIDInputError) as error:
        save(filename_prefix=prefix)
    message = str(error.value)
    assert message.startswith("AID Frames to Video: input 'filename_prefix'") and "outside" in message
    assert "Fix:" in message
    assert written() == before


def test_prefix_with_sub_folders_and_dot_dots_inside_output_is_fine(comfy_base):
    _, first = save(filename_prefix="aid_test/a/../b/clip")
    _, second = save(filename_prefix="aid_test/a/../b/clip")
    folder = os.path.realpath(comfy_base / "output" / "aid_test" / "b")
    assert os.path.dirname(os.path.realpath(first)) == folder == os.path.dirname(os.path.realpath(second))
    first_counter, second_counter = (int(os.path.basename(p).split("_")[1]) for p in (first, second))
    assert second_counter == first_counter + 1


def test_a_failed_encode_leaves_no_file(tmp_path):
    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    frames = to_rgb8(distinct_frames(4))
    for label in FORMATS:
        target = tmp_path / f"clip.{FORMATS[label].extension}"
        with pytest.raises(KeyboardInterrupt):
            encode(str(target), list(frames), label, 8.0, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- errors and the VIDEO output


@pytest.mark.parametrize("overrides, input_name", [
    (dict(images=torch.zeros(2, 8, 8)), "images"),
    (dict(images=torch.zeros(0, 8, 8, 3)), "images"),
    (dict(format="avi"), "format"),
    (dict(loop="bounce"), "loop"),
    (dict(format="gif", fps=60.0), "fps"),
    (dict(format="mp4 (h264)", crf=60), "crf"),
    (dict(filename_prefix=""), "filename_prefix"),
    (dict(images=torch.zeros(2, 1, 7, 3), odd_size="crop"), "odd_size"),
])
def test_bad_input_errors_name_node_input_and_fix(comfy_base, overrides, input_name):
    with pytest.raises(AIDInputError) as error:
        save(**overrides)
    assert str(error.value).startswith(f"AID Frames to Video: input '{input_name}'") and "Fix:" in str(error.value)


@pytest.mark.parametrize("format", [label for label, f in FORMATS.items() if f.extension in ("mp4", "webm")])
def test_every_crf_the_widget_offers_is_accepted_by_each_crf_format(comfy_base, format):
    crf = AIDFramesToVideo.INPUT_TYPES()["required"]["crf"][1]
    for value in (crf["min"], crf["default"], crf["max"]):
        _, path = save(format=format, crf=value)
        assert len(decode_video(path)[0]) == 5, (format, value)


@pytest.mark.skipif(not HAS_VIDEO, reason="this ComfyUI has no VIDEO type")
def test_video_output_is_even_sized_with_exact_rate(comfy_base, tmp_path):
    from comfy_api.latest import Input

    result, _ = save(images=distinct_frames(3, height=25, width=33), format="gif", fps=29.97, loop="ping-pong")
    frames, video = result["result"]
    assert frames.shape == (6, 25, 33, 3)
    assert isinstance(video, Input.Video)
    assert video.get_dimensions() == (34, 26) and video.get_components().frame_rate == Fraction(2997, 100)
    assert "VIDEO output padded" in result["ui"]["text"][0]
    video.save_to(str(tmp_path / "core.mp4"))  # what core Save Video does with it
    assert len(decode_video(str(tmp_path / "core.mp4"))[0]) == 6


def test_node_declares_types_and_is_registered(comfy):
    info = AIDFramesToVideo.INPUT_TYPES()
    assert info["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert AIDFramesToVideo.OUTPUT_NODE and AIDFramesToVideo.RETURN_TYPES[0] == "IMAGE"
    assert len(AIDFramesToVideo.OUTPUT_TOOLTIPS) == len(AIDFramesToVideo.RETURN_TYPES)
    assert ("VIDEO" in AIDFramesToVideo.RETURN_TYPES) == HAS_VIDEO
    assert comfy["nodes"].NODE_CLASS_MAPPINGS["AIDFramesToVideo"] is AIDFramesToVideo


# ---------------------------------------------------------------- through ComfyUI's executor


def test_headless_prompt_saves_clip_and_shows_it(runner, comfy_base):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 66, "height": 50, "batch_size": 2, "color": 0xFF0000}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 66, "height": 50, "batch_size": 1, "color": 0x0000FF}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "AIDFramesToVideo",
              "inputs": {"images": ["3", 0], "filename_prefix": "aid_test/headless", "format": "mp4 (h264)",
                         "fps": 10.0, "loop": "ping-pong", "hold_first": 1, "hold_last": 2, "reverse": False,
                         "odd_size": "pad", "crf": 23, "webp_quality": 90}},
    }
    result = runner.run(prompt, {"extra_pnginfo": {"workflow": {"note": "headless"}}}).raise_for_error()
    ui = result.outputs["4"]
    assert list(ui["animated"]) == [True] and "3 frames -> 9" in ui["text"][0]
    (path,) = result.output_files(comfy_base)
    decoded, rate, metadata = decode_video(str(path))
    assert decoded.shape == (9, 50, 66, 3) and rate == Fraction(10)
    assert json.loads(metadata["workflow"]) == {"note": "headless"} and "4" in json.loads(metadata["prompt"])


def test_headless_validation_rejects_unknown_format(runner):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 0}},
        "2": {"class_type": "AIDFramesToVideo",
              "inputs": {"images": ["1", 0], "filename_prefix": "aid_test/bad", "format": "avi", "fps": 8.0,
                         "loop": "forward", "hold_first": 0, "hold_last": 0, "reverse": False, "odd_size": "pad",
                         "crf": 19, "webp_quality": 90}},
    }
    result = runner.run(prompt)
    assert not result.success and "format" in json.dumps(result.error)
