#include <torch/extension.h>
#include <algorithm>
#include <cmath>
#include <vector>
// A probe (benchmarks/compiled_step_probe.py), not part of nasforge: one training step of a group
// of MLP candidates, each over its own unpadded parameters. Candidate c's parameters start at
// offsets[c]: per layer Wt (in x out: nn.Linear's weight transposed) then b (out); ``wt`` is a twin
// buffer with the same offsets holding W (out x in) for the input gradients, refreshed after Adam.
// Products are register-blocked (4 rows x 32 columns of the result in 8 vector registers); the
// buffers and scratch carry 32 floats of slack, since rows are read 16 floats at a time.
static inline void axpy(float* __restrict__ y, const float* __restrict__ x, float a, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) y[k] += a * x[k];
}
typedef float v16 __attribute__((vector_size(64)));
static inline v16 load16(const float* p) { v16 v; __builtin_memcpy(&v, p, 64); return v; }
static inline void add_store(float* p, v16 v, int64_t n) {
  float t[16]; __builtin_memcpy(t, &v, 64);
  for (int64_t k = 0; k < n; ++k) p[k] += t[k];
}
// C[R,N] += sum over t < T of A(r, t) * Bm[t, :], with A(r, t) = A[r * a_row + t * a_t]: 4 rows x 32
// columns of C stay in 8 vector registers while t runs. Bm's rows are read 16 floats at a time
// (buffers carry slack; columns past N are computed and dropped).
static void gemm(float* __restrict__ C, int64_t R, int64_t N, int64_t T, const float* __restrict__ A, int64_t a_row,
                 int64_t a_t, const float* __restrict__ Bm) {
  for (int64_t n = 0; n < N; n += 32) {
    const int64_t w0 = std::min<int64_t>(16, N - n), w1 = std::max<int64_t>(0, std::min<int64_t>(16, N - n - 16));
    int64_t r = 0;
    for (; r + 4 <= R; r += 4) {
      v16 c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {};
      for (int64_t t = 0; t < T; ++t) {
        const v16 b0 = load16(Bm + t * N + n), b1 = w1 ? load16(Bm + t * N + n + 16) : v16{};
        const float* a = A + r * a_row + t * a_t;
        const float x0 = a[0], x1 = a[a_row], x2 = a[2 * a_row], x3 = a[3 * a_row];
        c00 += x0 * b0; c01 += x0 * b1; c10 += x1 * b0; c11 += x1 * b1;
        c20 += x2 * b0; c21 += x2 * b1; c30 += x3 * b0; c31 += x3 * b1;
      }
      float* c = C + r * N + n;
      add_store(c, c00, w0); add_store(c + 16, c01, w1); add_store(c + N, c10, w0); add_store(c + N + 16, c11, w1);
      add_store(c + 2 * N, c20, w0); add_store(c + 2 * N + 16, c21, w1); add_store(c + 3 * N, c30, w0); add_store(c + 3 * N + 16, c31, w1);
    }
    for (; r < R; ++r) for (int64_t t = 0; t < T; ++t) axpy(C + r * N + n, Bm + t * N + n, A[r * a_row + t * a_t], w0 + w1);
  }
}
// C[M,N] += A[M,K] @ Bm[K,N] (row-major).
static void gemm_nn(float* C, const float* A, const float* Bm, int64_t M, int64_t N, int64_t K) { gemm(C, M, N, K, A, K, 1, Bm); }
// C[K2,N] += A^T @ Bm with A (M x K2) and Bm (M x N): the weights' gradient.
static void gemm_tn(float* C, const float* A, const float* Bm, int64_t M, int64_t N, int64_t K2) { gemm(C, K2, N, M, A, 1, K2, Bm); }

torch::Tensor step(torch::Tensor p, torch::Tensor wt, torch::Tensor g, torch::Tensor m, torch::Tensor v, torch::Tensor offsets,
                   torch::Tensor dims, torch::Tensor depths, torch::Tensor acts, torch::Tensor x, torch::Tensor y,
                   double lr, double b1, double b2, double eps, int64_t t) {
  const int64_t C = x.size(0), B = x.size(1), n_in = x.size(2), W = dims.size(1);
  float* P = p.data_ptr<float>(); float* PT = wt.data_ptr<float>(); float* G = g.data_ptr<float>();
  float* M = m.data_ptr<float>(); float* V = v.data_ptr<float>();
  const int64_t* off = offsets.data_ptr<int64_t>(); const int64_t* dm = dims.data_ptr<int64_t>();
  const int64_t* dep = depths.data_ptr<int64_t>(); const int64_t* ac = acts.data_ptr<int64_t>();
  const float* X = x.data_ptr<float>(); const int64_t* Y = y.data_ptr<int64_t>();
  auto losses = torch::zeros({C}, x.options()); float* L = losses.data_ptr<float>();
  static thread_local std::vector<float> act, pre, delta, gh;
  const float bc1 = 1.0f - std::pow((float)b1, (float)t), bc2 = 1.0f - std::pow((float)b2, (float)t);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t D = dep[c]; const int64_t* d = dm + c * W;
    int64_t wo[16], bo[16], ao[17]; int64_t o_ = off[c], a_ = 0;
    for (int64_t l = 0; l <= D; ++l) { wo[l] = o_; o_ += d[l] * d[l + 1]; bo[l] = o_; o_ += d[l + 1]; }
    for (int64_t l = 0; l <= D + 1; ++l) { ao[l] = a_; a_ += B * d[l]; }
    const int64_t end = o_;
    act.resize(a_); pre.resize(a_);
    std::copy(X + c * B * n_in, X + (c + 1) * B * n_in, act.begin());
    for (int64_t l = 0; l <= D; ++l) {
      const int64_t in = d[l], out = d[l + 1];
      float* z = pre.data() + ao[l + 1]; const float* bb = P + bo[l];
      for (int64_t b = 0; b < B; ++b) std::copy(bb, bb + out, z + b * out);
      gemm_nn(z, act.data() + ao[l], P + wo[l], B, out, in);
      float* h = act.data() + ao[l + 1];
      if (l < D) {
        if (ac[c] == 0) {
#pragma omp simd
          for (int64_t k = 0; k < B * out; ++k) h[k] = z[k] > 0.0f ? z[k] : 0.0f;
        } else {
#pragma omp simd
          for (int64_t k = 0; k < B * out; ++k) h[k] = tanhf(z[k]);
        }
      }
    }
    const int64_t K = d[D + 1]; const float* zl = pre.data() + ao[D + 1];
    delta.assign(B * K + 32, 0.0f); float loss = 0.0f;
    for (int64_t b = 0; b < B; ++b) {
      const float* zr = zl + b * K; float mx = zr[0];
      for (int64_t k = 1; k < K; ++k) mx = std::max(mx, zr[k]);
      float s = 0.0f; for (int64_t k = 0; k < K; ++k) s += std::exp(zr[k] - mx);
      const float lse = mx + std::log(s); const int64_t yb = Y[c * B + b];
      loss += lse - zr[yb];
      for (int64_t k = 0; k < K; ++k) delta[b * K + k] = std::exp(zr[k] - lse) / B;
      delta[b * K + yb] -= 1.0f / B;
    }
    L[c] = loss / B;
    for (int64_t l = D; l >= 0; --l) {
      const int64_t in = d[l], out = d[l + 1];
      float* gW = G + wo[l]; float* gb = G + bo[l];
      std::fill(gW, gW + in * out, 0.0f); std::fill(gb, gb + out, 0.0f);
      for (int64_t b = 0; b < B; ++b) axpy(gb, delta.data() + b * out, 1.0f, out);
      gemm_tn(gW, act.data() + ao[l], delta.data(), B, out, in);
      if (l == 0) break;
      gh.assign(B * in + 32, 0.0f);
      gemm_nn(gh.data(), delta.data(), PT + wo[l], B, in, out);  // W (out x in)
      const float* z = pre.data() + ao[l]; const float* h = act.data() + ao[l];
      if (ac[c] == 0) {
#pragma omp simd
        for (int64_t k = 0; k < B * in; ++k) gh[k] = z[k] > 0.0f ? gh[k] : 0.0f;
      } else {
#pragma omp simd
        for (int64_t k = 0; k < B * in; ++k) gh[k] *= 1.0f - h[k] * h[k];
      }
      delta.swap(gh);
    }
    const float step_size = lr / bc1, sbc2 = std::sqrt(bc2), fb1 = b1, fb2 = b2, feps = eps;
#pragma omp simd
    for (int64_t k = off[c]; k < end; ++k) {
      const float gk = G[k];
      M[k] = fb1 * M[k] + (1.0f - fb1) * gk;
      V[k] = fb2 * V[k] + (1.0f - fb2) * gk * gk;
      P[k] -= step_size * M[k] / (std::sqrt(V[k]) / sbc2 + feps);
    }
    for (int64_t l = 1; l <= D; ++l) {  // refresh W = Wt^T for the next step's input gradients
      const int64_t in = d[l], out = d[l + 1]; const float* s = P + wo[l]; float* dst = PT + wo[l];
      for (int64_t i = 0; i < in; ++i) for (int64_t o = 0; o < out; ++o) dst[o * in + i] = s[i * out + o];
    }
  }
  return losses;
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) { mod.def("step", &step); }
