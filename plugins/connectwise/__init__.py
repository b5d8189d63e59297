"""ConnectWise PSA (Manage) connector: companies, agreements, additions, time, products; tickets."""
