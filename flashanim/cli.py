"""The ``flashanim`` command line.

Subcommands (one function each, listed in :data:`COMMANDS`)::

    flashanim trace --kernel fa2-fwd --seq-len 16 --head-dim 4 --block-m 4 \\
        --block-n 4 [--causal] [--values] [--device cpu|cuda] -o trace.json
    flashanim check --kernel fa2-bwd --seq-len 17 --head-dim 5 --causal

``trace`` records a kernel's own trace and writes it as JSON (see
:mod:`flashanim.trace.io`); ``check`` runs a kernel and prints its error against a
float64 reference next to flash-attn's bound (plain PyTorch in the same
precision), exiting with 1 when it is outside the bound.

Bad arguments give one line ``flashanim: error: ...`` and exit code 2. To add a
subcommand, write ``_configure_x(parser)`` and ``_run_x(args) -> int`` and add a
:class:`Command` to :data:`COMMANDS`.

The kernels' device is fixed per process when :mod:`flashanim.kernels` is first
imported, so ``--device`` sets ``FLASHANIM_DEVICE`` before anything imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from flashanim.trace.model import KERNELS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser", "Command", "COMMANDS", "CliError"]

_DTYPES = ("float32", "float16", "bfloat16")
_DEVICES = ("cpu", "cuda")


class CliError(Exception):
    """A usage problem found after parsing (exit code 2, one line)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``flashanim: error: ...``."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog.split()[1:]
        where = f" {' '.join(sub)}" if sub else ""
        self.exit(2, f"flashanim{where}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1, got {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The kernel and shape arguments that ``trace`` and ``check`` share.

    Their defaults are the scenes' (:data:`flashanim.config.PARAMS`); their
    ranges are the kernels' own (any N, head dims 1..256, powers of two for the
    blocks, checked by the kernel with one message), not the scenes' drawing
    limits."""
    from flashanim.config import PARAM

    p.add_argument(
        "--kernel", required=True, choices=KERNELS, help="which kernel to run"
    )
    for flag, name, meta, what in (
        ("--seq-len", "seq_len", "N", "query length N_q"),
        ("--head-dim", "head_dim", "d", "head dimension d (1 .. 256)"),
        ("--block-m", "block_m", "BM", "BLOCK_M, query rows per block (a power of two)"),
        ("--block-n", "block_n", "BN", "BLOCK_N, key rows per block (a power of two)"),
    ):  # fmt: skip
        default = PARAM[name].default
        p.add_argument(flag, type=_positive_int, default=default, metavar=meta,
                       help=f"{what} (default {default})")  # fmt: skip
    p.add_argument(
        "--seq-len-k",
        type=_positive_int,
        default=None,
        metavar="N",
        help="key length N_k (default: --seq-len)",
    )
    p.add_argument("--batch", type=_positive_int, default=1, metavar="B")
    p.add_argument("--heads", type=_positive_int, default=1, metavar="H")
    p.add_argument("--causal", action="store_true", help="causal mask")
    p.add_argument("--dtype", choices=_DTYPES, default="float32")
    p.add_argument("--seed", type=_seed, default=0, help="input seed (default 0)")
    p.add_argument(
        "--device",
        choices=_DEVICES,
        default=None,
        help="where the kernels run (default: cuda if available)",
    )


def _select_device(device: str | None) -> None:
    """Fix the kernels' device for this process (before they are imported)."""
    if device is None:
        return
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CliError(
                "--device cuda: PyTorch sees no CUDA device on this machine; "
                "use --device cpu (Triton's interpreter)"
            )
    mod = sys.modules.get("flashanim.kernels._device")
    if mod is not None and mod.BACKEND != device:
        raise CliError(
            f"--device {device}: this process already runs the kernels on "
            f"{mod.BACKEND!r} (the device is chosen once per process)"
        )
    os.environ["FLASHANIM_DEVICE"] = device


def _record_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        seq_len=args.seq_len,
        seq_len_k=args.seq_len_k,
        head_dim=args.head_dim,
        block_m=args.block_m,
        block_n=args.block_n,
        batch=args.batch,
        heads=args.heads,
        causal=args.causal,
        dtype=args.dtype,
        seed=args.seed,
        device=args.device,
    )


# ------------------------------------------------------------------ flashanim trace


def _configure_trace(p: argparse.ArgumentParser) -> None:
    _add_run_arguments(p)
    p.add_argument(
        "--values", action="store_true", help="record value snapshots (small runs)"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PATH",
        help="trace file to write (.json or .json.gz)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        metavar="M",
        help="refuse a recording in Triton's interpreter estimated to take longer "
        "(default 10; 0: no limit)",
    )


def _fmt_time(seconds: float) -> str:
    from flashanim.talk import _duration

    return _duration(seconds)


def _run_trace(args: argparse.Namespace) -> int:
    import threading
    import time

    _select_device(args.device)
    if args.max_minutes < 0:
        raise CliError(f"--max-minutes must be >= 0, got {args.max_minutes:g}")
    folder = Path(args.output).parent
    if not folder.is_dir():  # checked before a recording that may take minutes
        raise CliError(f"-o {args.output}: no such folder {folder}; create it first")
    import flashanim.kernels  # noqa: F401  (chooses the device first)
    from flashanim.kernels import BACKEND
    from flashanim.trace import record, save_trace, traffic_summary
    from flashanim.trace.record import estimate_recording

    kw = _record_kwargs(args)
    stop = threading.Event()
    if BACKEND == "cpu":
        est, steps = estimate_recording(
            args.kernel, seq_len=args.seq_len, seq_len_k=args.seq_len_k,
            block_m=args.block_m, block_n=args.block_n, batch=args.batch,
            heads=args.heads, causal=args.causal, values=args.values,
        )  # fmt: skip
        limit = args.max_minutes * 60
        if limit and est > limit:
            raise CliError(
                f"this recording would take about {_fmt_time(est)} in Triton's CPU "
                f"interpreter ({steps} block steps at the measured pace), over the "
                f"{args.max_minutes:g} min limit: use a smaller --seq-len, larger "
                f"--block-m/--block-n{', no --values' if args.values else ''}, a GPU "
                f"(--device cuda), or --max-minutes 0 to run it anyway"
            )
        if est >= 10:
            print(
                f"recording {args.kernel} in Triton's CPU interpreter: about "
                f"{_fmt_time(est)} ({steps} block steps; Ctrl-C stops it, nothing "
                f"is written)",
                flush=True,
            )
        t0 = time.perf_counter()

        def tick() -> None:
            while not stop.wait(30):
                spent = time.perf_counter() - t0
                print(
                    f"  recording: {_fmt_time(spent)} of about {_fmt_time(est)}",
                    flush=True,
                )

        if est > 30:
            threading.Thread(target=tick, daemon=True).start()
    try:
        trace = record(args.kernel, values=args.values, **kw)
    except KeyboardInterrupt:
        print(
            f"flashanim trace: interrupted; nothing was written ({args.output} is "
            f"as it was)",
            file=sys.stderr,
        )
        return 130
    finally:
        stop.set()
    path = save_trace(trace, args.output)
    s = traffic_summary(trace)
    print(
        f"wrote {path}: {len(trace.events)} events from {len(trace.programs)} "
        f"programs; HBM read {s.read_bytes} B, written {s.write_bytes} B"
    )
    return 0


# ------------------------------------------------------------------ flashanim check


def _configure_check(p: argparse.ArgumentParser) -> None:
    _add_run_arguments(p)


def _run_check(args: argparse.Namespace) -> int:
    _select_device(args.device)
    import torch

    from flashanim.kernels.reference import attention_ref, within_rule
    from flashanim.trace import record

    kw = _record_kwargs(args)
    kernels = [args.kernel] if args.kernel != "fa2-fwd" else ["fa2-fwd", "fa2-bwd"]
    results: dict[str, tuple[bool, float, float]] = {}
    for kernel in kernels:
        trace = record(kernel, values=False, keep_tensors=True, **kw)
        t = {n: torch.from_numpy(a) for n, a in trace.tensors.items()}
        dt = getattr(torch, args.dtype)
        q, k, v = (t[n].to(dt) for n in ("Q", "K", "V"))
        scale = trace.meta.softmax_scale
        q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
        qp, kp, vp = (x.clone().requires_grad_() for x in (q, k, v))
        ref = attention_ref(q64, k64, v64, args.causal, scale, upcast=True)
        pt = attention_ref(qp, kp, vp, args.causal, scale, upcast=False)
        if "O" in t and "O" not in results:
            results["O"] = within_rule(t["O"], pt.detach(), ref.detach(), factor=2.0)
        if all(n in t for n in ("dQ", "dK", "dV")):
            do = t["dO"].to(dt)
            g64 = torch.autograd.grad(ref, (q64, k64, v64), do.double())
            gpt = torch.autograd.grad(pt, (qp, kp, vp), do)
            for name, r64, rpt in zip(("dQ", "dK", "dV"), g64, gpt, strict=True):
                results[name] = within_rule(t[name], rpt, r64, factor=3.0)
    m = trace.meta
    print(
        f"{args.kernel}: B={m.batch} H={m.heads} N_q={m.seq_len_q} N_k={m.seq_len_k} "
        f"d={m.head_dim} BLOCK_M={m.block_m} BLOCK_N={m.block_n} causal={m.causal} "
        f"{m.dtype} on {m.device}"
    )
    print(
        "  (bound: flash-attn's rule, 2x (O) or 3x (grads) the error of plain "
        "PyTorch in the same precision, + 1e-5)"
    )
    bad = []
    for name, (ok, err, bound) in results.items():
        print(
            f"  {name:<3} max|err| {err:.3e}  bound {bound:.3e}  "
            f"{'ok' if ok else 'OUTSIDE THE RULE'}"
        )
        if not ok:
            bad.append(name)
    if bad:
        print(f"FAILED: {', '.join(bad)} outside flash-attn's rule")
        return 1
    print("all within flash-attn's rule")
    return 0


# ------------------------------------------------------- flashanim render / slides


def _resolution(text: str) -> tuple[int, int]:
    m = text.lower().replace(",", "x").split("x")
    try:
        w, h = (int(v) for v in m)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 320x180, got {text!r}"
        ) from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(
            f"{text}: width and height must be even and at least 16"
        )
    return w, h


def _param_type(prm):
    """An argparse type that parses with the table's row (one rule, one message)."""
    from flashanim.config import ConfigError

    def parse(text: str):
        try:
            return prm.parse(text)
        except ConfigError as exc:
            # argparse names the flag itself: "argument --seq-len: 0: must be ..."
            msg = exc.cli.removeprefix(f"{prm.flag} ")
            raise argparse.ArgumentTypeError(msg) from None

    parse.__name__ = prm.name
    return parse


def _add_render_arguments(p: argparse.ArgumentParser, slides: bool) -> None:
    from flashanim.render import ASPECTS, FORMATS, GIF_BUDGET_BYTES, GIF_FPS
    from flashanim.talk import QUALITIES

    p.add_argument(
        "scenes", nargs="*", metavar="SCENE", help="scene names (flashanim list)"
    )
    p.add_argument("--all", action="store_true", help="every scene, in talk order")
    from flashanim.config import PARAMS

    for prm in PARAMS:  # the scene parameters, from the one table
        if prm.flag is None:
            continue
        reads = "every scene" if prm.scenes is None else ", ".join(prm.scenes)
        default = "off" if prm.kind == "bool" else prm.default
        text = f"{prm.help}; " + (
            "" if prm.kind == "bool" else f"accepted: {prm.range}; "
        )
        text += "default: "
        text += "the scene's" if default is None else f"{default}"
        text += f"; read by: {reads}; env {prm.env}"
        if prm.kind == "bool":
            p.add_argument(prm.flag, action="store_true", default=None, help=text)
        else:
            p.add_argument(
                prm.flag,
                dest=prm.name,
                type=_param_type(prm),
                default=None,
                metavar=prm.metavar or prm.name.upper(),
                help=text.replace("%", "%%"),
            )
    p.add_argument(
        "--quality",
        choices=list(QUALITIES),
        default="low",
        help="low 480p15 (default), medium 720p30, high 1080p60, 4k",
    )
    _add_cut_argument(p, slides)
    if not slides:
        p.add_argument(
            "--format",
            dest="fmt",
            choices=FORMATS,
            default="mp4",
            help=(
                f"mp4 (default), gif, webm, mov, png (frame sequence). GIFs: "
                f"{GIF_FPS} frames/s, low or medium quality; budget: every scene "
                f"at 480p (--quality low) at most {GIF_BUDGET_BYTES >> 20} MiB"
            ),
        )
        p.add_argument(
            "--transparent",
            action="store_true",
            help="alpha channel (webm, mov or png)",
        )
    p.add_argument(
        "--aspect",
        choices=list(ASPECTS),
        default="16:9",
        help="16:9 (default) or 4:3 (same layout, room above and below)",
    )
    p.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        metavar="WxH",
        help="exact pixel size (overrides --quality's and --aspect's)",
    )
    p.add_argument("--fps", type=float, default=None, help="frames per second")
    p.add_argument(
        "--no-sections", action="store_true", help="no per-section clips and posters"
    )
    p.add_argument("--no-captions", action="store_true", help="no SRT/WebVTT files")
    p.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=1,
        help="scenes rendered at once (default 1)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default="media/slides" if slides else "media/flashanim",
        help="output folder",
    )


def _add_cut_argument(p: argparse.ArgumentParser, slides: bool) -> None:
    p.add_argument(
        "--cut",
        choices=("talk",),
        default=None,
        help=(
            "slides of a whole cut instead of scenes: 'talk' makes one deck of the "
            "talk cut's clips, with its speaker notes (flashanim.cut)"
            if slides
            else "render a whole cut instead of scenes: 'talk' renders the talk "
            "cut's clips (--quality, --jobs, --theme) and joins them with "
            "cross-fades into media/talk/ (flashanim.cut)"
        ),
    )


def _request(args: argparse.Namespace, slides: bool):
    from flashanim.config import PARAMS
    from flashanim.render import RenderRequest, find_scenes

    if slides and args.cut == "talk":
        from flashanim.cut import CUT

        if args.scenes or args.all:
            raise CliError("--cut talk makes slides of the whole talk cut: give no "
                           "SCENE and no --all")  # fmt: skip
        args.scenes = [c.name for c in CUT]
    scenes = find_scenes(args.scenes, args.all)
    extra = {
        prm.name: getattr(args, prm.name)
        for prm in PARAMS
        if prm.flag and prm.field is None and getattr(args, prm.name, None) is not None
    }
    return RenderRequest(
        **extra,
        all_scenes=args.all,
        scenes=scenes,
        out=Path(args.output),
        quality=args.quality,
        fmt=getattr(args, "fmt", "mp4"),
        transparent=getattr(args, "transparent", False),
        aspect=args.aspect,
        seq_len=args.seq_len,
        head_dim=args.head_dim,
        block_m=args.block_m,
        block_n=args.block_n,
        causal=args.causal,
        theme=args.theme,
        seed=args.seed,
        trace=args.trace,
        resolution=args.resolution,
        fps=args.fps,
        sections=not args.no_sections or slides,
        captions=not args.no_captions,
        posters=not args.no_sections,
        slides=slides,
        jobs=args.jobs,
    )


def _configure_render(p: argparse.ArgumentParser) -> None:
    _add_render_arguments(p, slides=False)


def _run_render(args: argparse.Namespace) -> int:
    from flashanim.render import check_request, render

    if args.cut == "talk":
        if args.scenes or args.all:
            raise CliError("--cut talk renders the whole talk cut: give no SCENE "
                           "and no --all")  # fmt: skip
        from flashanim.cut import main as cut_main

        if args.theme:
            os.environ["FLASHANIM_THEME"] = args.theme
        return cut_main(["--quality", args.quality, "--jobs", str(args.jobs)])
    req = _request(args, slides=False)
    check_request(req)
    return _render_or_fail(lambda: render(req), req.out)


def _render_or_fail(job, out: Path) -> int:
    """Run a render; exit 0, 1 (a scene failed or a closing check found a
    mismatch), or 130 (interrupted), with a truthful one-line message."""
    from flashanim.render import RenderInterrupted

    try:
        outputs = job()
    except RenderInterrupted as exc:
        if exc.kept:
            what = (
                f"the new files of {', '.join(exc.kept)} were kept; the other "
                f"scenes' files in {out} are as they were"
            )
        else:
            what = f"no new files were kept; the files in {out} are as they were"
        print(f"flashanim: interrupted; {what}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("flashanim: interrupted before rendering", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"flashanim: error: {exc}", file=sys.stderr)
        return 1
    bad = [(o.scene.name, v) for o in outputs or () for v in o.failed_checks]
    for name, v in bad:
        print(
            f"flashanim: error: {name}: closing check failed: {v['headline']}",
            file=sys.stderr,
        )
    return 1 if bad else 0


def _configure_slides(p: argparse.ArgumentParser) -> None:
    _add_render_arguments(p, slides=True)


def _run_slides(args: argparse.Namespace) -> int:
    from flashanim.render import check_request, render
    from flashanim.slides import DECK_NAME, build_deck, require_manim_slides

    req = _request(args, slides=True)
    check_request(req)
    try:
        require_manim_slides()
    except RuntimeError as exc:
        raise CliError(str(exc)) from None

    def deck(staging, outputs):
        done = build_deck(staging, outputs, req.out)
        print(f"slides: {req.out / DECK_NAME} (open it in a browser)")
        return done

    return _render_or_fail(lambda: render(req, after=deck), req.out)


# --------------------------------------------------------------- flashanim list


def _configure_list(p: argparse.ArgumentParser) -> None:
    pass


def _run_list(args: argparse.Namespace) -> int:
    from flashanim.cut import CUT
    from flashanim.talk import TALK

    clips = [c.scene for c in CUT]
    width = max(len(s.name) for s in (*TALK, *clips))
    for heading, scenes in (("the talk cut (--cut talk)", clips),
                            ("the deep dive (--all)", TALK)):  # fmt: skip
        print(f"{heading}:")
        for s in scenes:
            print(f"  {s.name:<{width}}  {s.title}  ({s.path}:{s.cls})")
    return 0


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, argument setup and action."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: The subcommands, in the order ``flashanim --help`` lists them.
COMMANDS: list[Command] = [
    Command(
        "trace",
        "record a kernel's trace and write it as JSON",
        _configure_trace,
        _run_trace,
    ),
    Command(
        "check",
        "check a kernel against a float64 reference (flash-attn rule)",
        _configure_check,
        _run_check,
    ),
    Command(
        "render",
        "render scenes with parameters: video, sections, posters, captions",
        _configure_render,
        _run_render,
    ),
    Command(
        "slides",
        "render scenes as slides (one per section) and build an HTML deck",
        _configure_slides,
        _run_slides,
    ),
    Command(
        "list", "list the scenes of the talk, in order", _configure_list, _run_list
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``flashanim`` parser with one subparser per :data:`COMMANDS` entry."""
    parser = _Parser(
        prog="flashanim",
        description="FlashAttention explained from the real kernel's own traces.",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flashanim`` command line; return the exit code."""
    from flashanim.trace import TraceFormatError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args._run(args)
    except (CliError, TraceFormatError, ValueError, TypeError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"flashanim: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
