//! Tree generators, serial baselines and the benchmark harness.
