// drover (the program): user, group and host names when drover is a static program.
#pragma once

namespace drover::cli {

/// In a static drover (meson option program_link=static, the default): keeps glibc to the name
/// services built into it, files for users and groups, files and dns for hosts, instead of the
/// modules /etc/nsswitch.conf may name. A module glibc loads into a static program runs against
/// a second copy of libc and can crash it (nss-systemd does, asked for a user it does not know:
/// docs/reliability.md, row F4). Call before any thread exists and before any lookup.
/// In a dynamically linked drover: nothing.
void restrict_name_services() noexcept;

/// "" in a dynamically linked drover; in a static one, a sentence that says where names are
/// looked up and what to do about a name only another service knows.
const char* name_service_note() noexcept;

} // namespace drover::cli
