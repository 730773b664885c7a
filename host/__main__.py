"""``python -m reflow`` runs the demo pipeline."""

from ._demo import main

main()
