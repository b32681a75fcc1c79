//! The diffusion harness the generative presets share.
//!
//! - [`schedule`]: DDPM's linear noise schedule, DDIM's step (any `eta`; DDPM ancestral and DDIM
//!   inversion are special cases) as host coefficients, respacing to K steps, the sinusoidal
//!   time embedding.
//! - [`net`]: the noise-predicting MLP `eps_theta([x_t, c, emb(t)])` with SiLU, its inputs
//!   assembled on the device (so `x_t` can be traced for input gradients), and its trainer.
//! - [`sample`]: DDIM sampling and inversion on the device around any noise predictor, slerp.
//! - [`plane`]: the 2-D part: Gaussian mixtures with exact interpolant fields, the
//!   checkerboard, an MLP over `(t, x)` and its regression step, Euler / Heun /
//!   Euler-Maruyama samplers with a Tweedie end jump, sliced W1 / MMD, scatter pictures.
//! - [`features`]: the digits on [-1, 1] and the feature classifier (accuracy, penultimate
//!   features for Frechet and feature distances).
//!
//! A prior or classifier that every arm of a launch shares is trained once per seed through
//! [`crate::experiments::memo`]. Sample metrics live in `metrics` (`distances`, `frechet`,
//! `psnr`) and pictures in `metrics::picture`.

pub mod features;
pub mod net;
pub mod plane;
pub mod sample;
pub mod schedule;

pub use features::{feature_classifier, to_signed, to_unit, FeatureClassifier, SignedDigits};
pub use net::{train_eps_net, EpsNet, EpsNetConfig, TrainConfig, TrainedEpsNet};
pub use sample::{ddim_invert, ddim_sample, gaussian_rows, slerp};
pub use schedule::{time_embedding, NoiseSchedule};
