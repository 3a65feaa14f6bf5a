"""workbench: semi-supervised multi-modal medical image segmentation, step by step.

The library behind the notebooks in ``notebooks/``: built-in synthetic BraTS- and
HECKTOR-like data (:mod:`workbench.data.synthetic`), loaders for the real NIfTI folders
(:mod:`workbench.data.nifti`), the paper's U-Net (:mod:`workbench.nets`), one training
loop (:mod:`workbench.train`) that every method (:mod:`workbench.methods`) runs on, the
papers' metrics (:mod:`workbench.metrics`) and the event log (:mod:`workbench.events`).
"""

__version__ = "0.1.0"
