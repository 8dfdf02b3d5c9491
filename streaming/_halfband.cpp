// voxflip.streaming._halfband: resampling by exactly 2 (up or down) with a half-band FIR, streamed.
// The Python face is streaming/streamer.py (MonoResampler), which designs the filter.
//
// A half-band low-pass h[-M..M] (M odd) has h[0] = 1/2 and h[n] = 0 at every other even n, so:
//  * up by 2: y[2m] = x[m] and y[2m+1] = 2 sum_i h[2i+1] (x[m-i] + x[m+1+i]), i = 0..L-1,
//    L = (M+1)/2 taps per output pair (the filter is symmetric: one product per pair of samples);
//  * down by 2: y[m] = x[2m]/2 + sum_i h[2i+1] (x[2m-2i-1] + x[2m+2i+1]).
// Output is aligned with the input (y[2m] is x[m]; y[m] is centred on x[2m]): it is held back until
// the input it needs has arrived, L input samples up, M down (`latency`). flush() feeds zeros for
// the rest and returns exactly what the input owes: 2n samples up, ceil(n / 2) down. Block sizes
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

class Halfband {
 public:
  // `odd`: h[1], h[3], ..., h[M] of the prototype (M = 2 * len(odd) - 1); `up`: the direction.
  Halfband(py::array_t<double, py::array::c_style | py::array::forcecast> odd, bool up) : up_(up) {
    if (odd.ndim() != 1 || odd.shape(0) < 1)
      throw std::invalid_argument("the half-band filter needs at least one odd tap");
    taps_.assign(odd.data(), odd.data() + odd.shape(0));
    for (double& t : taps_) {
      if (!std::isfinite(t)) throw std::invalid_argument("the half-band filter's taps must be finite");
      if (up_) t *= 2.0;  // the zeros stuffed between input samples halve the level
    }
    reset();
  }

  int latency() const { return up_ ? half() : reach(); }
  bool up() const { return up_; }
  std::int64_t samples_in() const { return fed_; }

  void reset() {
    buf_.assign(reach(), 0.0);  // the zeros before the first sample
    base_ = -reach();
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
      buf_.insert(buf_.end(), static_cast<std::size_t>(reach()) + 1, 0.0);
      run(out);
    }
    reset();
    return to_array(out);
  }

 private:
  int half() const { return static_cast<int>(taps_.size()); }  // L
  int reach() const { return 2 * half() - 1; }                  // M

  // Produce every output whose input has arrived (input known up to base_ + size - 1) and that the
  // input owes: y[2m], y[2m+1] for m < fed_ up; y[m] for 2m < fed_ down.
  void run(std::vector<float>& out) {
    const int L = half();
    const std::int64_t known = base_ + static_cast<std::int64_t>(buf_.size());  // one past the last
    if (up_) {
      // pair m needs x[m - L + 1 .. m + L]
      while (next_ < fed_ && next_ + L < known) {
        const double* x = buf_.data() + (next_ - base_);
        out.push_back(static_cast<float>(x[0]));
        out.push_back(static_cast<float>(symmetric_sum(x, x + 1, 1)));
        ++next_;
      }
      drop_before(next_ - L + 1);
    } else {
      // y[m] needs x[2m - M .. 2m + M]
      const int M = reach();
      while (2 * next_ < fed_ && 2 * next_ + M < known) {
        const double* x = buf_.data() + (2 * next_ - base_);
        out.push_back(static_cast<float>(0.5 * x[0] + symmetric_sum(x - 1, x + 1, 2)));
        ++next_;
      }
      drop_before(2 * next_ - M);
    }
  }

  // sum_i c[i] (lo[-stride * i] + hi[stride * i]): four running sums, so that the products do not
  // wait for each other
  double symmetric_sum(const double* lo, const double* hi, int stride) const {
    const int L = half();
    const double* c = taps_.data();
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    int i = 0;
    for (; i + 4 <= L; i += 4) {
      a0 += c[i] * (lo[-stride * i] + hi[stride * i]);
      a1 += c[i + 1] * (lo[-stride * (i + 1)] + hi[stride * (i + 1)]);
      a2 += c[i + 2] * (lo[-stride * (i + 2)] + hi[stride * (i + 2)]);
      a3 += c[i + 3] * (lo[-stride * (i + 3)] + hi[stride * (i + 3)]);
    }
    for (; i < L; ++i) a0 += c[i] * (lo[-stride * i] + hi[stride * i]);
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

  bool up_;
  std::vector<double> taps_;
  std::vector<double> buf_;  // input samples base_, base_ + 1, ... (zeros before 0)
  std::int64_t base_ = 0, next_ = 0, fed_ = 0;
};

}  // namespace

PYBIND11_MODULE(_halfband, m) {
  m.doc() = "Streamed resampling by 2 with a half-band FIR (see streaming/streamer.py, MonoResampler)";
  py::class_<Halfband>(m, "Halfband")
      .def(py::init<py::array_t<double, py::array::c_style | py::array::forcecast>, bool>(), py::arg("odd_taps"),
           py::arg("up"),
           "A resampler by 2 (`up`: 2x the rate, else half) from the odd taps h[1], h[3], ..., h[M] of a "
           "half-band low-pass whose h[0] is 1/2.")
      .def("process", &Halfband::process, py::arg("x"), "Resample a block; returns what is complete.")
      .def("flush", &Halfband::flush, "The rest (zeros past the end), then a fresh start.")
      .def("reset", &Halfband::reset, "Forget the stream.")
      .def_property_readonly("latency", &Halfband::latency, "Input samples held back before the output.")
      .def_property_readonly("up", &Halfband::up)
      .def_property_readonly("samples_in", &Halfband::samples_in);
}
