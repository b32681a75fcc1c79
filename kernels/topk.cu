// TopK mask: for each row of a (rows x cols) row-major matrix, writes 1 at the k largest entries
// and 0 elsewhere. Ties go to the lower index; NaN ranks below every number. This is the GPU
// twin of `metrics::topk::topk_mask` (src/metrics/topk.rs), which the tests compare it against.
//
// One block per row; the threads of the block split the row's entries. Entry j is kept when
// fewer than k entries beat it.

__device__ __forceinline__ bool beats(float a, int ia, float b, int ib) {
    bool an = isnan(a), bn = isnan(b);
    if (an != bn) return bn;          // a number beats NaN
    if (an && bn) return ia < ib;     // two NaNs: lower index first
    if (a != b) return a > b;
    return ia < ib;
}

extern "C" __global__ void topk_mask_f32(const float *values, float *mask, int rows, int cols,
                                         int k) {
    int r = blockIdx.x;
    if (r >= rows) return;
    const float *row = values + (size_t)r * cols;
    float *out = mask + (size_t)r * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float v = row[j];
        int better = 0;
        for (int i = 0; i < cols && better < k; ++i) {
            if (i != j && beats(row[i], i, v, j)) ++better;
        }
        out[j] = better < k ? 1.0f : 0.0f;
    }
}
