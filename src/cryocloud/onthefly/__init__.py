"""On-the-fly's face: `cryocloud watch` and `cryocloud simulate-session` (parse, call app/, render)."""
