//! The training substrate every experiment shares: parameters that live on the run's device
//! ([`store`]), optimizers through dfdx's update kernels ([`optim`]), the Hessian estimators on
//! device vectors ([`curvature`]) and small models on runtime shapes ([`models`]).

pub mod curvature;
pub mod models;
pub mod optim;
pub mod store;
pub mod transfer;

pub use optim::{Optimizer, Rule};
pub use store::{ParamId, ParamStore, ParamVec, Taped};
