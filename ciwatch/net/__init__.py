"""Wire formats and address helpers shared by every stage: socket addresses as the kernel lays
them out and DNS messages. The bottom of the house: imports nothing of ciwatch."""
