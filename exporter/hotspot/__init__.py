"""HotSpot JVM access without a JDK: the performance-data file (:mod:`.perfdata`), the
attach socket (:mod:`.attach`), and finding the JVMs of the host and the perf-data
files that are theirs (:mod:`.discovery`)."""
