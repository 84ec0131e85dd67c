//! Drives the simulator over real HTTP.
