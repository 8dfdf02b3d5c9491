// The real FFT that voxflip's compiled parts share (engine/features/_spectral.cpp,
// engine/vocoder/_pulses.cpp): radix 2, power-of-two sizes, tables made once per object, no
// allocation per transform. Header-only, in namespace voxflip.

#pragma once

#include <cmath>
#include <vector>

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
      const int a = k % h_, b = (h_ - k) % h_;
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
  // each later stage reads its twiddles from one contiguous run of the table
  void transform() {
    double* zr = z_re_.data();
    double* zi = z_im_.data();
    for (int p = 0; p < h_; p += 2) {
      const double ar = zr[p], ai = zi[p], br = zr[p + 1], bi = zi[p + 1];
      zr[p] = ar + br;
      zi[p] = ai + bi;
      zr[p + 1] = ar - br;
      zi[p + 1] = ai - bi;
    }
    for (int len = 4, offset = 0; len <= h_; offset += len / 2, len <<= 1) {
      const int half = len >> 1;
      const double* wr = stage_re_.data() + offset;
      const double* wi = stage_im_.data() + offset;
      for (int start = 0; start < h_; start += len) {
        double* pr = zr + start;
        double* pi = zi + start;
        double* qr = pr + half;
        double* qi = pi + half;
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
