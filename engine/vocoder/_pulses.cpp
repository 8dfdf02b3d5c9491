// voxflip.engine.vocoder._pulses: the arithmetic of the pulse synthesiser, compiled. The Python
// face is engine/vocoder/source_filter.py (SourceFilterSynth), which draws the pulses' noise and
// decides how the work is grouped; here, without the GIL:
//
//  * place_pulses: where the pulses fall between frames (the phase advanced sample by sample);
//  * frame_responses: each frame's minimum-phase responses (the periodic part's, and the noise
//    filter, which takes the periodic response's phase with its own amplitude), one folded real
//    cepstrum per frame;
//  * pulse_responses: each pulse's summed response, its two frames' responses mixed by its
//    position, delayed by a phase ramp, plus its period of noise through the mixed noise filter;
//  * overlap_add: the responses added into the output at their pulses, in pulse order.
//
// In numpy the same work was ~250 small array operations per call holding the interpreter lock:
// a second core could share the FFTs but not the rest, and a live 10 ms block paid the call
// overheads. The formulas are the module docstring's of source_filter.py; tests/test_engine_synth.py
// checks them against a numpy transcription.

#include "real_fft.h"

#include <pybind11/complex.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace py = pybind11;

namespace {

using voxflip::RealFFT;
using cplx = std::complex<double>;

// added to amplitudes before a log or a division, as source_filter._EPS
constexpr double kEps = 1e-12;

template <typename T>
using In = py::array_t<T, py::array::c_style | py::array::forcecast>;
template <typename T>
using Out = py::array_t<T, py::array::c_style>;

// The FFT and the buffers of one size, kept per thread between calls (a live block makes two calls
// every 10 ms; the tables cost more to make than a block's transforms).
struct Work {
  explicit Work(int n) : fft(n), wave(n), re(n / 2 + 1), im(n / 2 + 1) {}
  RealFFT fft;
  std::vector<double> wave, re, im;
};

Work& work_for(int n) {
  thread_local std::unique_ptr<Work> kept;
  if (!kept || kept->fft.size() != n) kept = std::make_unique<Work>(n);
  return *kept;
}

int fft_size_of(py::ssize_t bins) {
  const py::ssize_t n = 2 * (bins - 1);
  if (n < 64 || (n & (n - 1)))
    throw std::invalid_argument("spectra of " + std::to_string(bins) + " bins: need fft_size // 2 + 1 bins, fft_size a power of two >= 64");
  return static_cast<int>(n);
}

void check_shape(const py::array& a, const char* name, py::ssize_t rows, py::ssize_t cols) {
  if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(rows) + ", " +
                                std::to_string(cols) + ")");
}

void check_length(const py::array& a, const char* name, py::ssize_t length) {
  if (a.ndim() != 1 || a.shape(0) != length)
    throw std::invalid_argument(std::string(name) + " must hold " + std::to_string(length) + " values, one per row");
}

// out[k] = the minimum-phase spectrum with amplitudes amp[k] (w.re holds amp on entry): the real
// cepstrum of log(amp + eps), its negative quefrencies folded onto the positive ones, exponentiated.
void minimum_phase(Work& w, cplx* out) {
  const int n = w.fft.size(), half = n / 2;
  for (int k = 0; k <= half; ++k) {
    w.re[k] = std::log(w.re[k] + kEps);
    w.im[k] = 0.0;
  }
  w.fft.inverse(w.re.data(), w.im.data(), w.wave.data());
  const double scale = 1.0 / n;
  w.wave[0] *= scale;
  for (int m = 1; m < half; ++m) w.wave[m] *= 2.0 * scale;
  w.wave[half] *= scale;
  std::fill(w.wave.begin() + half + 1, w.wave.end(), 0.0);
  w.fft.forward(w.wave.data(), w.re.data(), w.im.data());
  for (int k = 0; k <= half; ++k) out[k] = std::exp(w.re[k]) * cplx(std::cos(w.im[k]), std::sin(w.im[k]));
}

// The pulses of the intervals between frames f0[0..n-1]: per output sample the phase advances by
// the instantaneous F0 over the rate (the two frames' F0 interpolated where both are voiced, the
// voiced one's where one is, `unvoiced_hz` where the sample's nearer frame is unvoiced), summed
// from 0 within each interval and added to the interval's starting phase, which is wrapped to
// [0, 1) at every frame boundary. A pulse starts at sample k where the phase passes an integer;
// `delay` is how far before k it passed (at most one sample). Returns (start, delay, rate per
// sample at the pulse, voiced 1/0, the phase after the last interval).
py::tuple place_pulses(const In<double>& f0, int hop, double sample_rate, double unvoiced_hz, double phase) {
  if (f0.ndim() != 1 || f0.shape(0) < 1) throw std::invalid_argument("f0 must be 1-D with at least one frame");
  if (hop <= 0) throw std::invalid_argument("hop " + std::to_string(hop) + " must be > 0");
  if (!(sample_rate > 0.0)) throw std::invalid_argument("sample_rate must be > 0 Hz");
  if (!(unvoiced_hz > 0.0)) throw std::invalid_argument("unvoiced_hz must be > 0 Hz");
  const py::ssize_t intervals = f0.shape(0) - 1;
  const double* f = f0.data();
  std::vector<std::int64_t> start;
  std::vector<double> delay, rate, voiced;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < intervals; ++i) {
      const double left = f[i], right = f[i + 1];
      double within = 0.0;
      for (int m = 0; m < hop; ++m) {
        const double frac = static_cast<double>(m) / hop;
        const bool is_voiced = frac < 0.5 ? left > 0.0 : right > 0.0;
        const double f_inst = left > 0.0 && right > 0.0 ? left + (right - left) * frac : std::max(left, right);
        const double r = (is_voiced ? f_inst : unvoiced_hz) / sample_rate;
        const double before = phase + within;
        within += r;
        const double now = phase + within;
        if (std::floor(now) > std::floor(before)) {
          start.push_back(static_cast<std::int64_t>(i) * hop + m);
          delay.push_back(std::min((now - std::floor(now)) / r, 1.0));
          rate.push_back(r);
          voiced.push_back(is_voiced ? 1.0 : 0.0);
        }
      }
      phase += within;
      phase -= std::floor(phase);
    }
  }
  auto array_of = [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::value_type;
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
  };
  return py::make_tuple(array_of(start), array_of(delay), array_of(rate), array_of(voiced), phase);
}

void frame_responses(const In<double>& f0, const In<double>& sp, const In<double>& ap, Out<cplx> periodic,
                     Out<cplx> noise) {
  const py::ssize_t frames = f0.ndim() == 1 ? f0.shape(0) : -1;
  if (frames < 0) throw std::invalid_argument("f0 must be 1-D");
  if (sp.ndim() != 2) throw std::invalid_argument("sp must be 2-D (frames, bins)");
  const py::ssize_t bins = sp.shape(1);
  const int n = fft_size_of(bins);
  check_shape(sp, "sp", frames, bins);
  check_shape(ap, "ap", frames, bins);
  check_shape(periodic, "periodic", frames, bins);
  check_shape(noise, "noise", frames, bins);
  const double* f = f0.data();
  const double* s = sp.data();
  const double* a = ap.data();
  cplx* per = periodic.mutable_data();
  cplx* nf = noise.mutable_data();
  py::gil_scoped_release release;
  Work& w = work_for(n);
  std::vector<double> noise_amp(bins);
  for (py::ssize_t t = 0; t < frames; ++t) {
    const double* st = s + t * bins;
    const double* at = a + t * bins;
    cplx* pt = per + t * bins;
    cplx* nt = nf + t * bins;
    if (!(f[t] > 0.0)) {
      // unvoiced: the periodic part (aperiodicity 1 - 1e-12 from D4C) is 120 dB down, zero; the
      // noise filter is the envelope's own minimum-phase response
      std::fill(pt, pt + bins, cplx(0.0, 0.0));
      for (py::ssize_t k = 0; k < bins; ++k) w.re[k] = std::sqrt(std::max(st[k], 0.0));
      minimum_phase(w, nt);
      continue;
    }
    for (py::ssize_t k = 0; k < bins; ++k) {
      const double ratio = std::min(at[k], 1.0) * std::min(at[k], 1.0);
      w.re[k] = std::sqrt(std::max(st[k] * (1.0 - ratio), 0.0));
      noise_amp[k] = std::sqrt(std::max(st[k] * ratio, 0.0)) / (w.re[k] + kEps);
    }
    minimum_phase(w, pt);
    for (py::ssize_t k = 0; k < bins; ++k) nt[k] = pt[k] * noise_amp[k];
    pt[0] = 0.0;  // no DC from the pulse train
  }
}

void pulse_responses(const In<std::int64_t>& frame, const In<double>& weight, const In<double>& gain,
                     const In<std::int64_t>& advance, const In<double>& pulse_noise, const In<cplx>& periodic,
                     const In<cplx>& noise, const In<cplx>& advance_table, Out<double> out) {
  const py::ssize_t pulses = frame.ndim() == 1 ? frame.shape(0) : -1;
  if (pulses < 0) throw std::invalid_argument("frame must be 1-D");
  if (periodic.ndim() != 2) throw std::invalid_argument("periodic must be 2-D (frames, bins)");
  const py::ssize_t frames = periodic.shape(0), bins = periodic.shape(1);
  const int n = fft_size_of(bins);
  check_length(weight, "weight", pulses);
  check_length(gain, "gain", pulses);
  check_length(advance, "advance", pulses);
  if (pulse_noise.ndim() != 2 || pulse_noise.shape(0) != pulses || pulse_noise.shape(1) > n)
    throw std::invalid_argument("pulse_noise must have one row per pulse of at most " + std::to_string(n) + " samples");
  check_shape(noise, "noise", frames, bins);
  if (advance_table.ndim() != 2 || advance_table.shape(1) != bins)
    throw std::invalid_argument("advance_table must have " + std::to_string(bins) + " bins per row");
  check_shape(out, "out", pulses, n);
  const std::int64_t* j = frame.data();
  const std::int64_t* q = advance.data();
  for (py::ssize_t i = 0; i < pulses; ++i) {
    if (j[i] < 0 || j[i] + 1 >= frames)
      throw std::invalid_argument("pulse " + std::to_string(i) + " follows frame " + std::to_string(j[i]) +
                                  ": it needs that frame and the next among " + std::to_string(frames));
    if (q[i] < 0 || q[i] >= advance_table.shape(0))
      throw std::invalid_argument("pulse " + std::to_string(i) + " has advance " + std::to_string(q[i]) +
                                  ", the table has " + std::to_string(advance_table.shape(0)) + " rows");
  }
  const py::ssize_t length = pulse_noise.shape(1);
  const double* wt = weight.data();
  const double* g = gain.data();
  const double* nz = pulse_noise.data();
  const cplx* per = periodic.data();
  const cplx* nf = noise.data();
  const cplx* table = advance_table.data();
  double* o = out.mutable_data();
  py::gil_scoped_release release;
  Work& w = work_for(n);
  std::vector<double> sre(bins), sim(bins);
  const double scale = 1.0 / n;
  for (py::ssize_t i = 0; i < pulses; ++i) {
    std::copy(nz + i * length, nz + (i + 1) * length, w.wave.begin());
    std::fill(w.wave.begin() + length, w.wave.end(), 0.0);
    w.fft.forward(w.wave.data(), w.re.data(), w.im.data());
    const double right = wt[i], left = 1.0 - right;
    const cplx* p0 = per + j[i] * bins;
    const cplx* p1 = p0 + bins;
    const cplx* n0 = nf + j[i] * bins;
    const cplx* n1 = n0 + bins;
    const cplx* ramp = table + q[i] * bins;
    for (py::ssize_t k = 0; k < bins; ++k) {
      cplx s = cplx(w.re[k], w.im[k]) * (n0[k] * left + n1[k] * right);
      if (g[i] != 0.0) s += (p0[k] * left + p1[k] * right) * (ramp[k] * g[i]);
      sre[k] = s.real();
      sim[k] = s.imag();
    }
    double* row = o + i * n;
    w.fft.inverse(sre.data(), sim.data(), row);
    for (int m = 0; m < n; ++m) row[m] *= scale;
  }
}

void overlap_add(Out<double> buffer, const In<std::int64_t>& starts, const In<double>& responses) {
  if (buffer.ndim() != 1) throw std::invalid_argument("buffer must be 1-D");
  const py::ssize_t pulses = starts.ndim() == 1 ? starts.shape(0) : -1;
  if (pulses < 0 || responses.ndim() != 2 || responses.shape(0) != pulses)
    throw std::invalid_argument("starts (1-D) and responses (2-D) need one entry per pulse");
  const py::ssize_t width = responses.shape(1), size = buffer.shape(0);
  const std::int64_t* s = starts.data();
  for (py::ssize_t i = 0; i < pulses; ++i)
    if (s[i] < 0 || s[i] + width > size)
      throw std::invalid_argument("pulse " + std::to_string(i) + " at sample " + std::to_string(s[i]) + " with " +
                                  std::to_string(width) + " samples does not fit a buffer of " + std::to_string(size));
  double* b = buffer.mutable_data();
  const double* r = responses.data();
  py::gil_scoped_release release;
  for (py::ssize_t i = 0; i < pulses; ++i) {
    double* at = b + s[i];
    const double* row = r + i * width;
    for (py::ssize_t m = 0; m < width; ++m) at[m] += row[m];
  }
}

}  // namespace

PYBIND11_MODULE(_pulses, m) {
  m.doc() = "The pulse synthesiser's responses and overlap-add (see engine/vocoder/source_filter.py)";
  m.def("place_pulses", &place_pulses, py::arg("f0"), py::arg("hop"), py::arg("sample_rate"), py::arg("unvoiced_hz"),
        py::arg("phase"),
        "Where the pulses of the intervals between frames f0 fall: (start, delay, rate, voiced, phase after).");
  m.def("frame_responses", &frame_responses, py::arg("f0"), py::arg("sp"), py::arg("ap"),
        py::arg("periodic").noconvert(), py::arg("noise").noconvert(),
        "Fill `periodic` and `noise` (frames, bins; complex128, C order) with each frame's minimum-phase "
        "periodic response (zero where f0 is 0) and noise filter.");
  m.def("pulse_responses", &pulse_responses, py::arg("frame"), py::arg("weight"), py::arg("gain"),
        py::arg("advance"), py::arg("pulse_noise"), py::arg("periodic"), py::arg("noise"), py::arg("advance_table"),
        py::arg("out").noconvert(),
        "Fill `out` (pulses, fft_size; float64, C order) with each pulse's response: frames frame[i] and "
        "frame[i] + 1 mixed by weight[i], the periodic part times gain[i] and advance_table[advance[i]], plus "
        "the FFT of its row of pulse_noise times the mixed noise filter.");
  m.def("overlap_add", &overlap_add, py::arg("buffer").noconvert(), py::arg("starts"), py::arg("responses"),
        "buffer[starts[i] : starts[i] + width] += responses[i], in pulse order.");
}
