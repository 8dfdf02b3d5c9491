// The real FFT that voxflip's compiled parts share (engine/features/_spectral.cpp,
// engine/vocoder/_pulses.cpp): radix 2 (stages fused in pairs), power-of-two sizes, tables made
// once per object, no allocation per transform. Header-only, in namespace voxflip. Within 2e-13 of
// a direct DFT at 1024 points (tests/test_engine_spectral.py checks it against numpy's).

#pragma once

#include <cmath>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace voxflip {

constexpr double kPi = 3.14159265358979323846;

// A real FFT of a power-of-two size n >= 4, through a complex FFT of n / 2 points. Tables are made
// once; forward() and inverse() allocate nothing.
class RealFFT {
 public:
  explicit RealFFT(int n) : n_(n), h_(n / 2), rev_(h_), half_re_(h_ + 1), half_im_(h_ + 1), z_re_(h_), z_im_(h_) {
    int bits = 0;
    while ((1 << bits) < h_) ++bits;
    for (int i = 0; i < h_; ++i) {
      int r = 0;
      for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
      rev_[i] = r;
    }
    // the twiddles exp(-2 pi i j / len) of the stages len = 4, 8, ..., h, one after the other
    for (int len = 4; len <= h_; len <<= 1) {
      for (int j = 0; j < len / 2; ++j) {
        stage_re_.push_back(std::cos(2.0 * kPi * j / len));
        stage_im_.push_back(-std::sin(2.0 * kPi * j / len));
      }
    }
    for (int k = 0; k <= h_; ++k) {
      half_re_[k] = std::cos(2.0 * kPi * k / n_);
      half_im_[k] = -std::sin(2.0 * kPi * k / n_);
    }
  }

  int size() const { return n_; }

  // re/im[0..n/2] = sum_m x[m] exp(-2 pi i k m / n)
  void forward(const double* x, double* re, double* im) {
    for (int m = 0; m < h_; ++m) {
      z_re_[rev_[m]] = x[2 * m];
      z_im_[rev_[m]] = x[2 * m + 1];
    }
    transform();
    // split the spectrum of the packed pairs into the spectra of the even and odd samples
    for (int k = 0; k <= h_; ++k) {
      const int a = k == h_ ? 0 : k, b = k == 0 ? 0 : h_ - k;
      const double er = 0.5 * (z_re_[a] + z_re_[b]), ei = 0.5 * (z_im_[a] - z_im_[b]);
      const double or_ = 0.5 * (z_im_[a] + z_im_[b]), oi = -0.5 * (z_re_[a] - z_re_[b]);
      re[k] = er + half_re_[k] * or_ - half_im_[k] * oi;
      im[k] = ei + half_re_[k] * oi + half_im_[k] * or_;
    }
  }

  // x[m] = sum over the Hermitian spectrum of X[k] exp(+2 pi i k m / n), unnormalised (as
  // WORLD's and FFTW's c2r); im[0] and im[n/2] are ignored.
  void inverse(const double* re, const double* im, double* x) {
    for (int k = 0; k < h_; ++k) {
      // E = X[k] + conj(X[h-k]), O = (X[k] - conj(X[h-k])) * exp(+2 pi i k / n); Z = E + i O
      const double ar = re[k], ai = k == 0 ? 0.0 : im[k];
      const double br = re[h_ - k], bi = (h_ - k) == h_ ? 0.0 : -im[h_ - k];
      const double er = ar + br, ei = ai + bi;
      const double dr = ar - br, di = ai - bi;
      const double wr = half_re_[k], wi = -half_im_[k];
      const double or_ = dr * wr - di * wi, oi = dr * wi + di * wr;
      // conjugated, so that the forward transform computes the inverse
      z_re_[rev_[k]] = er - oi;
      z_im_[rev_[k]] = -(ei + or_);
    }
    transform();
    for (int m = 0; m < h_; ++m) {
      x[2 * m] = z_re_[m];
      x[2 * m + 1] = -z_im_[m];
    }
  }

 private:
  // in-place radix-2 decimation in time over the bit-reversed z_; the first stage has no twiddle,
  // the later ones go two at a time (each stage reads its twiddles from one contiguous run of the
  // table), two butterflies per SSE2 instruction where the compiler targets it (every x86-64)
  void transform() {
    double* __restrict zr = z_re_.data();
    double* __restrict zi = z_im_.data();
    for (int p = 0; p < h_; p += 2) {
      const double ar = zr[p], ai = zi[p], br = zr[p + 1], bi = zi[p + 1];
      zr[p] = ar + br;
      zi[p] = ai + bi;
      zr[p + 1] = ar - br;
      zi[p + 1] = ai - bi;
    }
    int len = 4, offset = 0;
    // two radix-2 stages at once (len and 2 len): one pass over the data, three twiddle products per
    // four points instead of four
    for (; 2 * len <= h_; offset += len / 2 + len, len <<= 2) {
      const int q = len >> 1;
      const double* __restrict w1r = stage_re_.data() + offset;
      const double* __restrict w1i = stage_im_.data() + offset;
      const double* __restrict w2r = w1r + q;
      const double* __restrict w2i = w1i + q;
      for (int start = 0; start < h_; start += 2 * len) {
        double* __restrict ar = zr + start;
        double* __restrict ai = zi + start;
        double* __restrict br = ar + q;
        double* __restrict bi = ai + q;
        double* __restrict cr = ar + len;
        double* __restrict ci = ai + len;
        double* __restrict dr = cr + q;
        double* __restrict di = ci + q;
        int j = 0;
#if defined(__SSE2__)
        for (; j + 2 <= q; j += 2) {
          const __m128d w1r_ = _mm_loadu_pd(w1r + j), w1i_ = _mm_loadu_pd(w1i + j);
          const __m128d w2r_ = _mm_loadu_pd(w2r + j), w2i_ = _mm_loadu_pd(w2i + j);
          const __m128d Ar = _mm_loadu_pd(ar + j), Ai = _mm_loadu_pd(ai + j);
          const __m128d Br = _mm_loadu_pd(br + j), Bi = _mm_loadu_pd(bi + j);
          const __m128d Cr = _mm_loadu_pd(cr + j), Ci = _mm_loadu_pd(ci + j);
          const __m128d Dr = _mm_loadu_pd(dr + j), Di = _mm_loadu_pd(di + j);
          const __m128d xr = _mm_sub_pd(_mm_mul_pd(Br, w1r_), _mm_mul_pd(Bi, w1i_));
          const __m128d xi = _mm_add_pd(_mm_mul_pd(Br, w1i_), _mm_mul_pd(Bi, w1r_));
          const __m128d yr = _mm_sub_pd(_mm_mul_pd(Dr, w1r_), _mm_mul_pd(Di, w1i_));
          const __m128d yi = _mm_add_pd(_mm_mul_pd(Dr, w1i_), _mm_mul_pd(Di, w1r_));
          const __m128d a1r = _mm_add_pd(Ar, xr), a1i = _mm_add_pd(Ai, xi);
          const __m128d b1r = _mm_sub_pd(Ar, xr), b1i = _mm_sub_pd(Ai, xi);
          const __m128d c1r = _mm_add_pd(Cr, yr), c1i = _mm_add_pd(Ci, yi);
          const __m128d d1r = _mm_sub_pd(Cr, yr), d1i = _mm_sub_pd(Ci, yi);
          const __m128d ur = _mm_sub_pd(_mm_mul_pd(c1r, w2r_), _mm_mul_pd(c1i, w2i_));
          const __m128d ui = _mm_add_pd(_mm_mul_pd(c1r, w2i_), _mm_mul_pd(c1i, w2r_));
          const __m128d tr = _mm_sub_pd(_mm_mul_pd(d1r, w2r_), _mm_mul_pd(d1i, w2i_));
          const __m128d ti = _mm_add_pd(_mm_mul_pd(d1r, w2i_), _mm_mul_pd(d1i, w2r_));
          _mm_storeu_pd(ar + j, _mm_add_pd(a1r, ur));
          _mm_storeu_pd(ai + j, _mm_add_pd(a1i, ui));
          _mm_storeu_pd(cr + j, _mm_sub_pd(a1r, ur));
          _mm_storeu_pd(ci + j, _mm_sub_pd(a1i, ui));
          _mm_storeu_pd(br + j, _mm_add_pd(b1r, ti));   // -i (tr + i ti) = ti - i tr
          _mm_storeu_pd(bi + j, _mm_sub_pd(b1i, tr));
          _mm_storeu_pd(dr + j, _mm_sub_pd(b1r, ti));
          _mm_storeu_pd(di + j, _mm_add_pd(b1i, tr));
        }
#endif
        for (; j < q; ++j) {
          // stage len: (a, b) and (c, d) with w1 = W_len^j
          const double xr = br[j] * w1r[j] - bi[j] * w1i[j], xi = br[j] * w1i[j] + bi[j] * w1r[j];
          const double yr = dr[j] * w1r[j] - di[j] * w1i[j], yi = dr[j] * w1i[j] + di[j] * w1r[j];
          const double a1r = ar[j] + xr, a1i = ai[j] + xi, b1r = ar[j] - xr, b1i = ai[j] - xi;
          const double c1r = cr[j] + yr, c1i = ci[j] + yi, d1r = cr[j] - yr, d1i = ci[j] - yi;
          // stage 2 len: (a1, c1) with w2 = W_2len^j, (b1, d1) with W_2len^(j + len/2) = -i w2
          const double ur = c1r * w2r[j] - c1i * w2i[j], ui = c1r * w2i[j] + c1i * w2r[j];
          const double tr = d1r * w2r[j] - d1i * w2i[j], ti = d1r * w2i[j] + d1i * w2r[j];
          const double vr = ti, vi = -tr;  // -i (tr + i ti)
          ar[j] = a1r + ur;
          ai[j] = a1i + ui;
          cr[j] = a1r - ur;
          ci[j] = a1i - ui;
          br[j] = b1r + vr;
          bi[j] = b1i + vi;
          dr[j] = b1r - vr;
          di[j] = b1i - vi;
        }
      }
    }
    if (len <= h_) {  // an odd number of stages left: the last one alone
      const int half = len >> 1;
      const double* __restrict wr = stage_re_.data() + offset;
      const double* __restrict wi = stage_im_.data() + offset;
      for (int start = 0; start < h_; start += len) {
        double* __restrict pr = zr + start;
        double* __restrict pi = zi + start;
        double* __restrict qr = pr + half;
        double* __restrict qi = pi + half;
        for (int j = 0; j < half; ++j) {
          const double xr = qr[j] * wr[j] - qi[j] * wi[j], xi = qr[j] * wi[j] + qi[j] * wr[j];
          qr[j] = pr[j] - xr;
          qi[j] = pi[j] - xi;
          pr[j] += xr;
          pi[j] += xi;
        }
      }
    }
  }

  int n_, h_;
  std::vector<int> rev_;
  std::vector<double> stage_re_, stage_im_, half_re_, half_im_, z_re_, z_im_;
};

}  // namespace voxflip
