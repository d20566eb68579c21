"""Online experiments: which arm a user is in, team-draft interleaving, and the statistics that
decide between a control and a challenger from live traffic (the sample-ratio check and an
always-valid sequential test, safe to read at every look)."""
