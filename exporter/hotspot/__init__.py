"""HotSpot JVM access without a JDK: the performance-data file and the attach socket."""
