"""Running a trained model: on one image of any size (streamed, tiled, holes filled) and over files."""
