//! A small convolutional network for the 8x8 single-channel digits:
//! conv 3x3 (1 -> c1, padding 1) -> ReLU -> conv 3x3 (c1 -> c2, padding 1, stride 2, to 4x4)
//! -> ReLU -> flatten -> linear to the classes.
//!
//! dfdx 0.13 has a conv2d, but only behind its `nightly` feature (it needs
//! `generic_const_exprs`), and its kernel trait is not part of `Device`, so generic code could
//! not name it anyway. The convolutions here are im2col products built from ops every device
//! has: the input (one row per pixel, channels as columns) is flattened, a zero is appended for
//! the padding, a `gather` forms the patches (`rows x c_in*k*k`) and a matmul with the kernel
//! (`c_out x c_in x k x k`, PyTorch's layout, reshaped and transposed) gives one row per output
//! pixel. The gather's backward scatters the gradient back, so the whole thing is differentiable
//! on the tape like any other op.
//!
//! Parameters: `"{prefix}.conv1.weight"` (`c1 x 1 x 3 x 3`), `"{prefix}.conv1.bias"`,
//! `"{prefix}.conv2.weight"` (`c2 x c1 x 3 x 3`), `"{prefix}.conv2.bias"`, `"{prefix}.fc.weight"`
//! (`c2*16 x classes`, inputs in PyTorch's NCHW flatten order) and `"{prefix}.fc.bias"`.

use dfdx::prelude::*;
use rand::Rng;

use super::{uniform_fan_in, Matrix};
use crate::nn::store::{ParamId, ParamStore, Taped};

/// The geometry of one 2-D convolution (square kernel, same stride and padding on both axes).
/// Images are stored NHWC: one row per pixel (`batch * height * width` rows, batch-major, then
/// row-major pixels), one column per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2dShape {
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding - self.kernel) / self.stride + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// Entries of one patch: `in_channels * kernel * kernel` (the fan-in).
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// The `kernel` shape, PyTorch's layout: `out x in x k x k`.
    pub fn kernel_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels,
            self.kernel,
            self.kernel,
        ]
    }

    /// For `batch` images, the position in the flattened NHWC input of every patch entry: one
    /// patch per output pixel (batch-major, then row-major), entries ordered (channel, ky, kx)
    /// like the kernel. Taps that fall in the padding point one past the input (the zero that
    /// [`conv2d`] appends).
    pub fn im2col_indices(&self, batch: usize) -> Vec<usize> {
        let (h, w, c, k) = (self.height, self.width, self.in_channels, self.kernel);
        let (oh, ow) = (self.out_height(), self.out_width());
        let zero = batch * h * w * c;
        let mut idx = Vec::with_capacity(batch * oh * ow * self.patch_len());
        for b in 0..batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        for ky in 0..k {
                            let iy = (oy * self.stride + ky).checked_sub(self.padding);
                            for kx in 0..k {
                                let ix = (ox * self.stride + kx).checked_sub(self.padding);
                                idx.push(match (iy, ix) {
                                    (Some(iy), Some(ix)) if iy < h && ix < w => {
                                        ((b * h + iy) * w + ix) * c + ch
                                    }
                                    _ => zero,
                                });
                            }
                        }
                    }
                }
            }
        }
        idx
    }
}

/// A 2-D convolution with bias as an im2col product: `x` is NHWC
/// (`batch*height*width x in_channels`), `kernel` is `out x in x k x k`, `idx` holds
/// [`Conv2dShape::im2col_indices`] for the batch. Returns `batch*out_h*out_w x out_channels`
/// (NHWC again). Works with or without a tape.
pub fn conv2d<E: Dtype, D: Device<E>, T: Tape<E, D>>(
    x: Tensor<(usize, usize), E, D, T>,
    kernel: Tensor<(usize, usize, usize, usize), E, D, T>,
    bias: Tensor<(usize,), E, D, T>,
    shape: &Conv2dShape,
    idx: &Tensor<(usize,), usize, D>,
) -> Tensor<(usize, usize), E, D, T> {
    let (rows_in, channels) = *x.shape();
    assert_eq!(channels, shape.in_channels, "input channels");
    let pixels = shape.height * shape.width;
    assert_eq!(rows_in % pixels, 0, "input rows are not whole images");
    let batch = rows_in / pixels;
    let rows = batch * shape.out_height() * shape.out_width();
    let patch = shape.patch_len();
    assert_eq!(
        idx.shape().0,
        rows * patch,
        "im2col indices for another batch"
    );
    let k = *kernel.shape();
    assert_eq!([k.0, k.1, k.2, k.3], shape.kernel_shape(), "kernel shape");
    let dev = x.device().clone();
    let n = rows_in * channels;
    let padded = (x.reshape_like(&(n,)), dev.zeros_like(&(1usize,))).concat_along(Axis::<0>);
    let patches = padded.gather(idx.clone()).reshape_like(&(rows, patch));
    let w = kernel
        .reshape_like(&(shape.out_channels, patch))
        .permute::<_, Axes2<1, 0>>();
    patches.matmul(w) + bias.broadcast_like::<_, Axis<0>>(&(rows, shape.out_channels))
}

/// conv 3x3 -> ReLU -> conv 3x3 stride 2 -> ReLU -> linear, on 8x8 single-channel images.
#[derive(Clone, Debug, PartialEq)]
pub struct SmallCnn {
    /// Kernel (`c1 x 1 x 3 x 3`) and bias.
    pub conv1: (ParamId, ParamId),
    /// Kernel (`c2 x c1 x 3 x 3`) and bias.
    pub conv2: (ParamId, ParamId),
    /// Weight (`c2*16 x classes`) and bias.
    pub fc: (ParamId, ParamId),
    pub shape1: Conv2dShape,
    pub shape2: Conv2dShape,
    pub classes: usize,
}

impl SmallCnn {
    /// Side of the input images.
    pub const SIDE: usize = 8;

    /// Adds the parameters to `store` under `prefix`, initialized like PyTorch's `nn.Conv2d`
    /// and `nn.Linear`.
    pub fn new<E: Dtype, D: Device<E>>(
        store: &mut ParamStore<E, D>,
        prefix: &str,
        channels: (usize, usize),
        classes: usize,
        rng: &mut impl Rng,
    ) -> SmallCnn {
        let (c1, c2) = channels;
        assert!(c1 > 0 && c2 > 0 && classes > 0, "sizes must be positive");
        let shape1 = Conv2dShape {
            in_channels: 1,
            out_channels: c1,
            height: Self::SIDE,
            width: Self::SIDE,
            kernel: 3,
            stride: 1,
            padding: 1,
        };
        let shape2 = Conv2dShape {
            in_channels: c1,
            out_channels: c2,
            height: shape1.out_height(),
            width: shape1.out_width(),
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        let mut conv = |name: &str, s: &Conv2dShape| {
            let ks = s.kernel_shape();
            let fan_in = s.patch_len();
            let w = store.add(
                &format!("{prefix}.{name}.weight"),
                &ks,
                uniform_fan_in(ks.iter().product(), fan_in, rng),
            );
            let b = store.add(
                &format!("{prefix}.{name}.bias"),
                &[s.out_channels],
                uniform_fan_in(s.out_channels, fan_in, rng),
            );
            (w, b)
        };
        let conv1 = conv("conv1", &shape1);
        let conv2 = conv("conv2", &shape2);
        let features = c2 * shape2.out_height() * shape2.out_width();
        let fc = (
            store.add(
                &format!("{prefix}.fc.weight"),
                &[features, classes],
                uniform_fan_in(features * classes, features, rng),
            ),
            store.add(
                &format!("{prefix}.fc.bias"),
                &[classes],
                uniform_fan_in(classes, features, rng),
            ),
        );
        SmallCnn {
            conv1,
            conv2,
            fc,
            shape1,
            shape2,
            classes,
        }
    }

    /// Inputs of the linear layer: `c2 * 4 * 4`.
    pub fn features(&self) -> usize {
        self.shape2.out_channels * self.shape2.out_height() * self.shape2.out_width()
    }

    /// Logits (`batch x classes`) of `x` (`batch x 64`, row-major pixels), on the tape.
    pub fn forward<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Taped<(usize, usize), E, D>,
    ) -> Taped<(usize, usize), E, D> {
        self.run(store, x, &mut |_| {})
    }

    /// Logits without a tape (evaluation).
    pub fn logits<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D>,
    ) -> Tensor<(usize, usize), E, D> {
        self.run(store, x, &mut |_| {})
    }

    /// The two post-ReLU feature maps without a tape, `batch x (h*w*channels)` each, every row
    /// an image in NHWC order (pixel-major, channels fastest).
    pub fn activations<E: Dtype, D: Device<E>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D>,
    ) -> Vec<Tensor<(usize, usize), E, D>> {
        let batch = x.shape().0;
        let mut maps = Vec::with_capacity(2);
        self.run(store, x, &mut |m| {
            let n = m.shape().0 * m.shape().1;
            maps.push(m.clone().reshape_like(&(batch, n / batch)));
        });
        maps
    }

    fn run<E: Dtype, D: Device<E>, T: Tape<E, D>>(
        &self,
        store: &ParamStore<E, D>,
        x: Tensor<(usize, usize), E, D, T>,
        keep: &mut dyn FnMut(&Matrix<E, D, T>),
    ) -> Tensor<(usize, usize), E, D, T> {
        let (batch, pixels) = *x.shape();
        assert_eq!(pixels, Self::SIDE * Self::SIDE, "8x8 single-channel images");
        let dev = store.device().clone();
        let kernel = |id: ParamId, s: &Conv2dShape| {
            let [o, i, k, _] = s.kernel_shape();
            store.flat(id).retaped::<T>().reshape_like(&(o, i, k, k))
        };
        let bias = |id: ParamId| store.flat(id).retaped::<T>();
        let layer =
            |h: Tensor<(usize, usize), E, D, T>, (w, b): (ParamId, ParamId), s: &Conv2dShape| {
                let idx = s.im2col_indices(batch);
                let idx = dev.tensor_from_vec(idx.clone(), (idx.len(),));
                conv2d(h, kernel(w, s), bias(b), s, &idx).relu()
            };
        let h1 = layer(
            x.reshape_like(&(batch * pixels, 1)),
            self.conv1,
            &self.shape1,
        );
        keep(&h1);
        let h2 = layer(h1, self.conv2, &self.shape2);
        keep(&h2);
        // NHWC rows to PyTorch's NCHW flatten: (batch, pixels, c2) -> (batch, c2, pixels).
        let (c2, out_pixels) = (
            self.shape2.out_channels,
            self.shape2.out_height() * self.shape2.out_width(),
        );
        let flat = h2
            .reshape_like(&(batch, out_pixels, c2))
            .permute::<_, Axes3<0, 2, 1>>()
            .reshape_like(&(batch, c2 * out_pixels));
        flat.matmul(store.matrix_value(self.fc.0).retaped::<T>())
            + store
                .flat(self.fc.1)
                .retaped::<T>()
                .broadcast_like::<_, Axis<0>>(&(batch, self.classes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::labels::one_hot;
    use crate::nn::models::softmax_cross_entropy;
    use crate::nn::models::tests::gradient_check;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(n: usize, rng: &mut impl Rng) -> Vec<f64> {
        (0..n).map(|_| StandardNormal.sample(rng)).collect()
    }

    /// The convolution by its definition: NCHW input, `out x in x k x k` kernel, zero padding.
    fn direct_conv(
        s: &Conv2dShape,
        batch: usize,
        x_nchw: &[f64],
        w: &[f64],
        b: &[f64],
    ) -> Vec<f64> {
        let (c, h, wd, k) = (s.in_channels, s.height, s.width, s.kernel);
        let (oh, ow) = (s.out_height(), s.out_width());
        let mut out = vec![0.0; batch * s.out_channels * oh * ow];
        for n in 0..batch {
            for o in 0..s.out_channels {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b[o];
                        for ch in 0..c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s.stride + ky) as isize - s.padding as isize;
                                    let ix = (ox * s.stride + kx) as isize - s.padding as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let (iy, ix) = (iy as usize, ix as usize);
                                    acc += x_nchw[((n * c + ch) * h + iy) * wd + ix]
                                        * w[((o * c + ch) * k + ky) * k + kx];
                                }
                            }
                        }
                        out[((n * s.out_channels + o) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_convolution_matches_the_definition() {
        let dev = Cpu::default();
        let mut rng = StdRng::seed_from_u64(5);
        for (kernel, stride, padding) in [(3, 1, 1), (3, 2, 1), (3, 1, 0), (2, 2, 0), (3, 3, 2)] {
            let s = Conv2dShape {
                in_channels: 2,
                out_channels: 3,
                height: 5,
                width: 6,
                kernel,
                stride,
                padding,
            };
            let batch = 2;
            let x_nchw = gaussian(batch * 2 * 5 * 6, &mut rng);
            let w = gaussian(s.kernel_shape().iter().product(), &mut rng);
            let b = gaussian(3, &mut rng);
            let want = direct_conv(&s, batch, &x_nchw, &w, &b);
            // NCHW to NHWC rows.
            let mut x_nhwc = vec![0.0; x_nchw.len()];
            for n in 0..batch {
                for ch in 0..2 {
                    for p in 0..30 {
                        x_nhwc[(n * 30 + p) * 2 + ch] = x_nchw[(n * 2 + ch) * 30 + p];
                    }
                }
            }
            let idx = s.im2col_indices(batch);
            let idx = dev.tensor_from_vec(idx.clone(), (idx.len(),));
            let got = conv2d(
                dev.tensor_from_vec(x_nhwc, (batch * 30, 2)),
                dev.tensor_from_vec(w, (3, 2, kernel, kernel)),
                dev.tensor_from_vec(b, (3,)),
                &s,
                &idx,
            );
            let (oh, ow) = (s.out_height(), s.out_width());
            assert_eq!(*got.shape(), (batch * oh * ow, 3));
            let got = got.as_vec();
            for n in 0..batch {
                for o in 0..3 {
                    for p in 0..oh * ow {
                        let g = got[(n * oh * ow + p) * 3 + o];
                        let w = want[(n * 3 + o) * oh * ow + p];
                        assert!((g - w).abs() < 1e-12, "{s:?}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn parameters_are_named_and_shaped() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut store = ParamStore::<f32, Cpu>::new(&Cpu::default());
        let cnn = SmallCnn::new(&mut store, "cnn", (4, 6), 10, &mut rng);
        let got: Vec<(String, Vec<usize>)> = store
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let want = [
            ("cnn.conv1.weight", vec![4, 1, 3, 3]),
            ("cnn.conv1.bias", vec![4]),
            ("cnn.conv2.weight", vec![6, 4, 3, 3]),
            ("cnn.conv2.bias", vec![6]),
            ("cnn.fc.weight", vec![96, 10]),
            ("cnn.fc.bias", vec![10]),
        ];
        assert_eq!(got.len(), want.len());
        for ((name, shape), (wn, ws)) in got.iter().zip(want.iter()) {
            assert_eq!((name.as_str(), shape), (*wn, ws));
        }
        assert_eq!(cnn.features(), 96);
        assert_eq!(cnn.conv2.0, store.id("cnn.conv2.weight"));
        // PyTorch's bound for conv2: 1/sqrt(c1 * 9).
        let w2 = store.values(cnn.conv2.0);
        assert!(w2.iter().all(|v| v.abs() <= 1.0 / 6.0));
    }

    #[test]
    fn logits_activations_and_the_taped_forward_agree() {
        let mut rng = StdRng::seed_from_u64(2);
        let dev = Cpu::default();
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let cnn = SmallCnn::new(&mut store, "cnn", (3, 5), 4, &mut rng);
        let x = dev.tensor_from_vec(gaussian(3 * 64, &mut rng), (3, 64));
        let logits = cnn.logits(&store, x.clone());
        assert_eq!(*logits.shape(), (3, 4));
        assert_eq!(
            logits.as_vec(),
            cnn.forward(&store, x.leaky_trace()).as_vec()
        );
        let maps = cnn.activations(&store, x.clone());
        assert_eq!(*maps[0].shape(), (3, 64 * 3));
        assert_eq!(*maps[1].shape(), (3, 16 * 5));
        assert!(maps.iter().all(|m| m.as_vec().iter().all(|v| *v >= 0.0)));
        // The head on the second map (NHWC rows, NCHW flatten for the linear layer) by hand.
        let (fw, fb) = (store.values(cnn.fc.0), store.values(cnn.fc.1));
        let m2 = maps[1].as_vec();
        let lv = logits.as_vec();
        for n in 0..3 {
            for o in 0..4 {
                let mut acc = fb[o];
                for ch in 0..5 {
                    for p in 0..16 {
                        acc += m2[(n * 16 + p) * 5 + ch] * fw[(ch * 16 + p) * 4 + o];
                    }
                }
                assert!((acc - lv[n * 4 + o]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = StdRng::seed_from_u64(9);
        let dev = Cpu::default();
        let mut store = ParamStore::<f64, Cpu>::new(&dev);
        let cnn = SmallCnn::new(&mut store, "cnn", (2, 3), 4, &mut rng);
        let x = dev.tensor_from_vec(gaussian(3 * 64, &mut rng), (3, 64));
        let y: Vec<f64> = one_hot(&[3, 0, 2], 4).iter().map(|&v| v as f64).collect();
        let y = dev.tensor_from_vec(y, (3, 4));
        let loss = |s: &ParamStore<f64, Cpu>| {
            softmax_cross_entropy(cnn.forward(s, x.leaky_trace()), y.clone())
        };
        let rel = gradient_check(&mut store, &loss);
        assert!(rel < 1e-6, "relative error {rel:e}");
    }

    #[test]
    fn adam_trains_the_cnn_on_the_digits() {
        use crate::datasets::{digits, DIGIT_CLASSES, DIGIT_PIXELS};
        use crate::nn::models::accuracy_on_device;
        use crate::nn::{Optimizer, Rule};
        let mut rng = StdRng::seed_from_u64(1);
        let data = digits(0.8, &mut rng);
        let dev = Cpu::default();
        let mut store = ParamStore::<f32, Cpu>::new(&dev);
        let cnn = SmallCnn::new(&mut store, "cnn", (8, 16), DIGIT_CLASSES, &mut rng);
        let n_train = data.y_train.len();
        let x_train = dev.tensor_from_vec(data.x_train.clone(), (n_train, DIGIT_PIXELS));
        let y_train = dev.tensor_from_vec(data.train_one_hot(), (n_train, DIGIT_CLASSES));
        let mut opt = Optimizer::new(Rule::adam(), 1e-2);
        let batch = 64;
        for _ in 0..150 {
            let pick: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..n_train)).collect();
            let idx = dev.tensor_from_vec(pick, (batch,));
            let xb = x_train.clone().gather(idx.clone());
            let yb = y_train.clone().gather(idx);
            let logits = cnn.forward(&store, xb.leaky_trace());
            let mut grads = softmax_cross_entropy(logits, yb).backward();
            opt.step(&mut store, &mut grads).unwrap();
        }
        let n_test = data.y_test.len();
        let x_test = dev.tensor_from_vec(data.x_test.clone(), (n_test, DIGIT_PIXELS));
        let acc = accuracy_on_device(&cnn.logits(&store, x_test), &data.y_test);
        assert!(acc > 0.9, "test accuracy {acc}");
    }
}
