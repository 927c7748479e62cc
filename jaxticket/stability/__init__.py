"""Stability across seeds: interpolation barriers, weight matching, mask overlap and
early-bird tickets (issue 12). Modules: ``interpolate``, ``matching``, ``overlap``,
``early_bird``; the lead exports their public names here once they land."""
