// MAST kernel: monotonic alignment of speech frames to singing frames with skips.
// See trainer/mast.py for the definition; this is the same dynamic programme in C++.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <stdexcept>
#include <vector>

namespace py = pybind11;

static py::array_t<long long> mast(py::array_t<float, py::array::c_style> score, int max_skip) {
  if (score.ndim() != 2) throw std::invalid_argument("score must be 2-D (T_singing, T_speech)");
  const py::ssize_t t_si = score.shape(0), t_sp = score.shape(1);
  if (t_si == 0 || t_sp == 0) throw std::invalid_argument("score must not be empty");
  if (max_skip < 1) throw std::invalid_argument("max_skip must be >= 1");
  const float* s = score.data();
  const py::ssize_t k = max_skip;
  const double neg = -1e30;
  std::vector<double> prev(t_si, neg), cur(t_si, neg);
  std::vector<int> back(static_cast<size_t>(t_si * t_sp), 0);
  py::array_t<long long> out(t_sp);
  auto path = out.mutable_unchecked<1>();
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < t_si && i < k; ++i) prev[i] = s[i * t_sp];
    for (py::ssize_t j = 1; j < t_sp; ++j) {
      for (py::ssize_t i = 0; i < t_si; ++i) {
        double best = neg;
        py::ssize_t arg = i;
        // predecessors i, i-1, ..., i-k; ties go to the later one (as the reference)
        for (py::ssize_t d = 0; d <= k && i - d >= 0; ++d) {
          const double v = prev[i - d];
          if (v > best) { best = v; arg = i - d; }
        }
        cur[i] = best <= neg ? neg : best + s[i * t_sp + j];
        back[static_cast<size_t>(i * t_sp + j)] = static_cast<int>(arg);
      }
      std::swap(prev, cur);
    }
    py::ssize_t i = t_si - 1;
    double best = neg;
    for (py::ssize_t c = t_si - 1; c >= 0 && c >= t_si - k; --c) {
      if (prev[c] > best) { best = prev[c]; i = c; }
    }
    for (py::ssize_t j = t_sp - 1; j >= 0; --j) {
      path(j) = i;
      i = back[static_cast<size_t>(i * t_sp + j)];
    }
  }
  return out;
}

PYBIND11_MODULE(_mast, m) {
  m.doc() = "MAST: monotonic alignment search of speech frames onto singing frames (see trainer/mast.py)";
  m.def("mast", &mast, py::arg("score"), py::arg("max_skip"));
}
