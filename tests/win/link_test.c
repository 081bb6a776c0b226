/*
 * link_test.c: the core (loop, tcp, udp, fence, rebuild, lookups, the pool)
 * built and linked for Windows with the IOCP backend as far as it goes.
 * Lines as iocp_probe.c prints them (check.h).
 */
#include "vigil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

int main(void) {
    check_prefix = "core";
    check("the library links and knows its version", !strcmp(vigil_version(), VIGIL_VERSION_STRING), "%s",
          vigil_version());
    vigil_loop *loop = NULL;
    vigil_loop_options uring = {.backend = VIGIL_BACKEND_URING};
    int rc = vigil_loop_create(&loop, &uring);
    check("io_uring is refused on Windows", rc == -ENOTSUP && !loop, "%d", rc);
    rc = vigil_loop_create(&loop, NULL);
    vigil_loop_info info = {0};
    if (rc == 0)
        vigil_loop_info_get(loop, &info);
    check("a loop is created on the completion port", rc == 0 && info.backend && !strncmp(info.backend, "iocp", 4),
          "%d, %s (%s)", rc, info.backend ? info.backend : "-", info.reason ? info.reason : "-");
    if (rc == 0)
        check("it is destroyed", vigil_loop_destroy(loop) == 0, "");
    vigil_loop_options bad = {.buf_count = 3};
    check("bad options are refused first", vigil_loop_create(&loop, &bad) == -EINVAL, "");
    check("calls on no loop are refused", vigil_loop_run(NULL, VIGIL_RUN_ONCE, 0) == -EINVAL &&
          vigil_loop_destroy(NULL) == -EINVAL, "");
    vigil_peer p;
    char host[64];
    uint16_t port = 0;
    int pr = vigil_peer_set(&p, "::1", 9);
    int tr = pr == 0 ? vigil_peer_text(&p, host, sizeof(host), &port) : pr;
    check("addresses round-trip", pr == 0 && tr == 0 && !strcmp(host, "::1") && port == 9, "%d %d %s", pr, tr,
          host);
    return check_done();
}
