"""modnas: profile edge boards, predict their costs, search once for every device, export and validate."""
