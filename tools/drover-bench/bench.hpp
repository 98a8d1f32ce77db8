// drover-bench: what every benchmark shares: a result (samples per contender) and its summary.
#pragma once

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bench {

struct stats {
    double median = 0, min = 0, max = 0;
};

inline stats summarize(std::vector<double> v) {
    stats s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    s.min = v.front();
    s.max = v.back();
    s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    return s;
}

/// One contender: a name, a note, and a function that takes one sample (a number in `unit`),
/// or nullopt when it cannot run here (then `missing` says why).
struct contender {
    std::string name;
    std::function<std::optional<double>()> sample;
    std::string missing; // non-empty: not available, and why
};

struct bench_result {
    std::string name, unit, what;
    bool lower_is_better = true;
    std::vector<std::pair<std::string, std::vector<double>>> samples; // per contender
    std::vector<std::pair<std::string, std::string>> missing;
    std::vector<std::string> notes;
    bool ratios = true; ///< false: the rows are different measures, not contenders
};

/// A markdown table cell: '|' would end it.
inline std::string cell(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '|') o += '\\';
        o += c;
    }
    return o;
}

} // namespace bench
