"""Reports read the store and never call a vendor: the client scorecard, the MSP's KPIs and the
maturity self-assessment. ``render`` holds what they share (the HTML page, SVG charts, the PDF)."""
