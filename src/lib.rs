//! reglab: a terminal lab workbench for regularization and training-dynamics papers.
//!
//! The engine (experiments, metrics, run manager, run store) never touches the terminal; the
//! headless runner and the terminal UI consume its events.

pub mod artifacts;
pub mod bench;
pub mod cli;
pub mod datasets;
pub mod devcheck;
pub mod device;
pub mod engine;
pub mod experiments;
pub mod export;
pub mod headless;
pub mod metrics;
pub mod nn;
pub mod ode;
pub mod online;
pub mod params;
pub mod presets;
pub mod report;
pub mod roadmap;
pub mod slurm;
pub mod sweep;
pub mod tui;
pub mod verdict;
pub mod verify;
