// drover: what a child's fd 0, 1 or 2 is connected to.
#pragma once

#include <filesystem>
#include <utility>

namespace drover {

/// What one of a child's standard streams (fd 0, 1 or 2) is connected to.
///
/// - `inherit()`: the parent's own fd of the same number (the default). If that fd is a pipe or
///   terminal with O_NONBLOCK set (Asio sets it on descriptors it wraps), the child gets a fresh
///   blocking open of the same object instead, so neither side sees the other's flag.
/// - `null()`: /dev/null.
/// - `pipe()`: a new pipe; the parent's end is available from the `child` as an Asio pipe.
/// - `file(path)`: a file; read for fd 0, created and truncated for fds 1 and 2.
/// - `append(path)`: a file opened for appending (created if missing).
/// - `fd(n)`: an existing descriptor of the parent. It is duplicated during `spawn()`; the
///   caller keeps ownership and may close it once `spawn()` returns.
/// - `pty(rows, cols)`: the slave side of a new pseudo-terminal. Every fd configured with
///   `pty()` shares the one terminal; it becomes the child's controlling terminal (the child
///   leads a new session, so `new_session(false)` is refused). The parent's side is
///   `child::pty()`; the window size is set before the child starts (the first `pty()` given
///   decides it) and changes with `child::resize_pty()`.
/// - `to_stdout()` (fd 2 only): the same open file as the child's fd 1, whatever that is
///   (stderr merged into stdout, like `2>&1`).
class stdio {
public:
    enum class kind : unsigned char { inherit, null, pipe, file, append, fd, pty, to_stdout };

    static stdio inherit() noexcept { return stdio{kind::inherit}; }
    static stdio null() noexcept { return stdio{kind::null}; }
    static stdio pipe() noexcept { return stdio{kind::pipe}; }
    static stdio file(std::filesystem::path p) { return stdio{kind::file, std::move(p)}; }
    static stdio append(std::filesystem::path p) { return stdio{kind::append, std::move(p)}; }
    static stdio fd(int fd) noexcept {
        stdio s{kind::fd};
        s.fd_ = fd;
        return s;
    }

    static stdio pty(unsigned short rows = 24, unsigned short cols = 80) noexcept {
        stdio s{kind::pty};
        s.rows_ = rows;
        s.cols_ = cols;
        return s;
    }
    static stdio to_stdout() noexcept { return stdio{kind::to_stdout}; }

    kind type() const noexcept { return kind_; }
    const std::filesystem::path& path() const noexcept { return path_; }
    int native_fd() const noexcept { return fd_; }
    unsigned short rows() const noexcept { return rows_; }
    unsigned short cols() const noexcept { return cols_; }
    bool operator==(const stdio&) const = default;

private:
    explicit stdio(kind k, std::filesystem::path p = {}) : kind_(k), path_(std::move(p)) {}

    kind kind_ = kind::inherit;
    std::filesystem::path path_;
    int fd_ = -1;
    unsigned short rows_ = 0;
    unsigned short cols_ = 0;
};

} // namespace drover
