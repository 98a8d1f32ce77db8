// /proc/self/mountinfo: parse_cgroup2_mount finds where cgroup v2 is mounted.
#include <string>

#include "detail/cgroup.hpp"
#include "fuzz.hpp"

namespace {
/// mountinfo's \ooo escapes written back: the kernel's (space, tab, newline, backslash), and
/// every other byte that would split a field (the parser splits on any white space).
std::string escape_octal(const std::string& s) {
    std::string out;
    for (char c : s) {
        const auto b = static_cast<unsigned char>(c);
        if (b <= 0x20 || c == '\\') {
            out += '\\';
            out += static_cast<char>('0' + (b >> 6));
            out += static_cast<char>('0' + ((b >> 3) & 7));
            out += static_cast<char>('0' + (b & 7));
        } else {
            out += c;
        }
    }
    return out;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(fuzz::as_text(data, size));
    std::string mount = "x", root = "x";
    drover::detail::parse_cgroup2_mount(text, mount, root);
    if (mount.empty()) {
        FUZZ_CHECK(root.empty());
        return 0;
    }
    FUZZ_CHECK(text.find("cgroup2") != std::string::npos);
    FUZZ_CHECK(mount.size() <= text.size() && root.size() <= text.size());
    // A line made of what was found, escaped as the kernel would, gives the same back.
    std::string m2, r2;
    drover::detail::parse_cgroup2_mount(
        "1 2 0:1 " + escape_octal(root) + " " + escape_octal(mount) + " rw - cgroup2 cgroup2 rw\n", m2, r2);
    FUZZ_CHECK(m2 == mount && r2 == root);
    return 0;
}
