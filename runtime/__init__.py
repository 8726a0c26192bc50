"""edgeloc lean runtime: numpy, OpenCV and one inference engine; never TensorFlow."""
