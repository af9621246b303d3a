"""What ciwatch knows about the world it watches: which paths hold credentials, what a
program is from its argv. Facts only, no events: the tracer and the rules both ask here."""
