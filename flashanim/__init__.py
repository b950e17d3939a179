"""flashanim: FlashAttention explained with Manim, driven by a real Triton kernel.

The package has three layers that only talk downwards:

* :mod:`flashanim.kernels` -- the Triton kernels, each with a compile-time ``TRACE``
  switch (no Manim);
* :mod:`flashanim.trace` -- decodes the kernels' trace buffers into plain data
  (:class:`~flashanim.trace.Trace`, :class:`~flashanim.trace.Event`), JSON in and out
  (no Manim);
* :mod:`flashanim.visuals` -- Manim mobjects and animation factories that play a trace.

Importing :mod:`flashanim` itself imports none of them.
"""

__version__ = "0.1.0"
