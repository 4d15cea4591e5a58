"""The networks: the generators T (each with its Geometry) and the discriminator D."""
