// voxflip.streaming._polyphase: resampling by an integer ratio R (up or down) with a Nyquist FIR,
// streamed. The Python face is streaming/streamer.py (MonoResampler), which designs the filter.
//
// The prototype h[-N..N] runs at the higher rate, cuts off at half the lower rate, and is a
// Nyquist filter: h[0] = 1/R and h[kR] = 0 for k != 0 (for R = 2, a half-band filter). So:
//  * up by R: y[Rm + p] = R sum_j h[R(m - j) + p] x[j]; phase p = 0 is x[m] itself, each other
//    phase a 2L-tap filter over x[m-L+1 .. m+L] (N = RL - 1);
//  * down by R: y[m] = x[Rm]/R + sum_{n > 0, h[n] != 0} h[n] (x[Rm - n] + x[Rm + n]) (symmetric:
//    one product per pair of samples, none for the zero taps).
// Output is aligned with the input (y[Rm] is x[m]; y[m] is centred on x[Rm]): it is held back until
// the input it needs has arrived, L input samples up, N down (`latency`). flush() feeds zeros for
// the rest and returns exactly what the input owes: R n samples up, ceil(n / R) down. Block sizes
// do not change the output. The filter runs in double precision on float32 audio, without the GIL.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

using Audio = py::array_t<float, py::array::c_style | py::array::forcecast>;
using Taps = py::array_t<double, py::array::c_style | py::array::forcecast>;

class Polyphase {
 public:
  // `prototype`: h[-N..N] (2N + 1 values, N = R L - 1 for some L >= 1); `ratio`: R >= 2; `up`: the
  // direction.
  Polyphase(const Taps& prototype, int ratio, bool up) : ratio_(ratio), up_(up) {
    if (ratio < 2) throw std::invalid_argument("ratio " + std::to_string(ratio) + " must be an integer >= 2");
    const py::ssize_t size = prototype.ndim() == 1 ? prototype.shape(0) : 0;
    if (size < 3 || size % 2 == 0 || ((size - 1) / 2 + 1) % ratio != 0)
      throw std::invalid_argument("the prototype needs 2N + 1 taps with N + 1 a multiple of the ratio " +
                                  std::to_string(ratio) + ", got " + std::to_string(size));
    reach_ = static_cast<int>((size - 1) / 2);
    half_ = (reach_ + 1) / ratio;
    const double* h = prototype.data() + reach_;  // h[n] at h[n], n = -N..N
    for (py::ssize_t i = 0; i < size; ++i)
      if (!std::isfinite(prototype.data()[i])) throw std::invalid_argument("the prototype's taps must be finite");
    if (up_) {
      // phase p >= 1: c_p[t] = R h[R (L - 1 - t) + p], t = 0..2L-1, read against x[m - L + 1 + t]
      phases_.assign(static_cast<std::size_t>(ratio - 1) * 2 * half_, 0.0);
      for (int p = 1; p < ratio; ++p)
        for (int t = 0; t < 2 * half_; ++t) {
          const int n = ratio * (half_ - 1 - t) + p;
          if (n >= -reach_ && n <= reach_) phases_[(p - 1) * 2 * half_ + t] = ratio * h[n];
        }
    } else {
      for (int n = 1; n <= reach_; ++n)
        if (n % ratio != 0) {
          offsets_.push_back(n);
          coefs_.push_back(h[n]);
        }
      centre_ = h[0];
    }
    reset();
  }

  int latency() const { return up_ ? half_ : reach_; }
  int ratio() const { return ratio_; }
  bool up() const { return up_; }

  void reset() {
    buf_.assign(reach_, 0.0);  // the zeros before the first sample
    base_ = -reach_;
    next_ = 0;
    fed_ = 0;
  }

  py::array_t<float> process(const Audio& x) {
    if (x.ndim() != 1) throw std::invalid_argument("the resampler takes 1-D audio");
    const float* in = x.data();
    const py::ssize_t n = x.shape(0);
    std::vector<float> out;
    {
      py::gil_scoped_release release;
      buf_.insert(buf_.end(), in, in + n);
      fed_ += n;
      run(out);
    }
    return to_array(out);
  }

  py::array_t<float> flush() {
    std::vector<float> out;
    {
      py::gil_scoped_release release;
      buf_.insert(buf_.end(), static_cast<std::size_t>(reach_) + 1, 0.0);
      run(out);
    }
    reset();
    return to_array(out);
  }

 private:
  // Produce every output whose input has arrived (input known up to base_ + size - 1) and that the
  // input owes: y[Rm .. Rm + R - 1] for m < fed_ up; y[m] with R m < fed_ down.
  void run(std::vector<float>& out) {
    const std::int64_t known = base_ + static_cast<std::int64_t>(buf_.size());  // one past the last
    const int L = half_, R = ratio_;
    if (up_) {
      // block m needs x[m - L + 1 .. m + L]
      while (next_ < fed_ && next_ + L < known) {
        const double* x = buf_.data() + (next_ - base_);
        out.push_back(static_cast<float>(x[0]));
        const double* first = x - (L - 1);
        for (int p = 1; p < R; ++p) out.push_back(static_cast<float>(dot(phases_.data() + (p - 1) * 2 * L, first, 2 * L)));
        ++next_;
      }
      drop_before(next_ - L + 1);
    } else {
      // y[m] needs x[Rm - N .. Rm + N]
      const int N = reach_;
      const int count = static_cast<int>(offsets_.size());
      while (R * next_ < fed_ && R * next_ + N < known) {
        const double* x = buf_.data() + (R * next_ - base_);
        double a0 = centre_ * x[0], a1 = 0.0;
        int i = 0;
        for (; i + 2 <= count; i += 2) {
          a0 += coefs_[i] * (x[-offsets_[i]] + x[offsets_[i]]);
          a1 += coefs_[i + 1] * (x[-offsets_[i + 1]] + x[offsets_[i + 1]]);
        }
        if (i < count) a0 += coefs_[i] * (x[-offsets_[i]] + x[offsets_[i]]);
        out.push_back(static_cast<float>(a0 + a1));
        ++next_;
      }
      drop_before(R * next_ - N);
    }
  }

  // sum_t c[t] x[t], four running sums so that the products do not wait for each other
  static double dot(const double* c, const double* x, int size) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    int t = 0;
    for (; t + 4 <= size; t += 4) {
      a0 += c[t] * x[t];
      a1 += c[t + 1] * x[t + 1];
      a2 += c[t + 2] * x[t + 2];
      a3 += c[t + 3] * x[t + 3];
    }
    for (; t < size; ++t) a0 += c[t] * x[t];
    return (a0 + a1) + (a2 + a3);
  }

  void drop_before(std::int64_t index) {
    const std::int64_t count = index - base_;
    if (count <= 0) return;
    buf_.erase(buf_.begin(), buf_.begin() + count);
    base_ = index;
  }

  static py::array_t<float> to_array(const std::vector<float>& v) {
    py::array_t<float> a(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
  }

  int ratio_;
  bool up_;
  int reach_ = 0, half_ = 0;          // N and L
  std::vector<double> phases_;        // up: the R - 1 non-trivial phases, 2L taps each
  std::vector<int> offsets_;          // down: the n > 0 with h[n] != 0 (by design: n not a multiple of R)
  std::vector<double> coefs_;
  double centre_ = 0.0;
  std::vector<double> buf_;           // input samples base_, base_ + 1, ... (zeros before 0)
  std::int64_t base_ = 0, next_ = 0, fed_ = 0;
};

}  // namespace

PYBIND11_MODULE(_polyphase, m) {
  m.doc() = "Streamed resampling by an integer ratio with a Nyquist FIR (see streaming/streamer.py, MonoResampler)";
  py::class_<Polyphase>(m, "Polyphase")
      .def(py::init<const Taps&, int, bool>(), py::arg("prototype"), py::arg("ratio"), py::arg("up"),
           "A resampler by `ratio` (`up`: that many times the rate, else that fraction of it) from the taps "
           "h[-N..N] of a Nyquist low-pass at the higher rate (h[0] = 1 / ratio, zero at the other multiples "
           "of the ratio), N + 1 a multiple of the ratio.")
      .def("process", &Polyphase::process, py::arg("x"), "Resample a block; returns what is complete.")
      .def("flush", &Polyphase::flush, "The rest (zeros past the end), then a fresh start.")
      .def("reset", &Polyphase::reset, "Forget the stream.")
      .def_property_readonly("latency", &Polyphase::latency, "Input samples held back before the output.")
      .def_property_readonly("ratio", &Polyphase::ratio)
      .def_property_readonly("up", &Polyphase::up);
}
