// drover (the program): user, group and host names when drover is a static program.
#include "name_services.hpp"

#ifdef DROVER_STATIC_PROGRAM
#include <nss.h>
#endif

namespace drover::cli {

void restrict_name_services() noexcept {
#ifdef DROVER_STATIC_PROGRAM
    // Only these databases are read by drover: identities (--user, --group, --groups, a
    // service's user and group) and probe addresses. initgroups is what getgrouplist reads.
    __nss_configure_lookup("passwd", "files");
    __nss_configure_lookup("group", "files");
    __nss_configure_lookup("initgroups", "files");
    __nss_configure_lookup("hosts", "files dns");
#endif
}

const char* name_service_note() noexcept {
#ifdef DROVER_STATIC_PROGRAM
    return "this drover is a static program and reads users and groups from /etc/passwd and "
           "/etc/group only: give them by number (a uid with no entry needs a group too), or use "
           "a drover built with -Dprogram_link=lean";
#else
    return "";
#endif
}

} // namespace drover::cli
