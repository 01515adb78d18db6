/* Helpers for bench/net-raw.sh: the two host-side pieces a bridge+TAP data
 * plane needs that no Debian tool does from a shell.
 *
 *   net-helper tap IFNAME BRIDGE MTU FD -- CMD [ARG]...
 *       Create TAP IFNAME (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, not
 *       persistent) in the current network namespace, give it MTU (the
 *       bridge's: a bridge drops to the smallest MTU of its ports), enslave it
 *       to BRIDGE and bring it up (`ip link`), put its fd on FD and exec CMD
 *       (QEMU with `-netdev tap,id=n0,fd=FD`). The TAP disappears when the
 *       last holder of the fd (QEMU) exits: nothing to clean up.
 *
 *   net-helper tap-send SOCKET IFNAME BRIDGE MTU
 *   net-helper tap-recv SOCKET FD -- CMD [ARG]...
 *       The same TAP made inside a (rootless) network namespace by tap-send
 *       and handed over a unix socket (SCM_RIGHTS) to tap-recv, which runs
 *       outside the namespaces and execs CMD (QEMU) with it on FD: the shape
 *       of a rootless supervisor getting its box's TAP from the network's
 *       helper.
 *
 *   net-helper pair FD_A FD_B -- CMD_A [ARG]... --- CMD_B [ARG]...
 *       Make a connected unix stream socketpair; fork: the child gets one
 *       end on FD_A and execs CMD_A (passt --fd FD_A), this process gets the
 *       other on FD_B and execs CMD_B (QEMU with -netdev
 *       stream,addr.type=fd,addr.str=FD_B). No socket file, no race, and
 *       passt sees EOF when QEMU goes.
 *
 *   net-helper proxy LISTEN_IP:PORT TARGET_IP:PORT [NETNS [USERNS]]
 *       A published port as a userspace proxy: bind and listen in the
 *       current namespace, then (single-threaded, before any thread exists)
 *       join USERNS (rootless) and NETNS, so each accepted connection is
 *       relayed to TARGET from inside the box network's namespace. Relays
 *       with splice(2) through a 1 MiB pipe per direction; half-closes are
 *       passed on. Prints "ready" on stdout once listening.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "net-helper: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Put fd on number want, inherited across exec (dup2 onto itself would keep
 * FD_CLOEXEC). */
static void place_fd(int fd, int want)
{
    if (fd == want) {
        if (fcntl(fd, F_SETFD, 0) < 0)
            die("fcntl");
    } else if (dup2(fd, want) < 0) {
        die("dup2");
    }
}

/* make_tap: TAP name (vnet header, not persistent) with MTU, enslaved to
 * bridge and up; returns its fd. */
static int make_tap(const char *name, const char *bridge, int mtu)
{
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("open /dev/net/tun");
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0)
        die("TUNSETIFF");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ip link set dev %s mtu %d master %s up", name, mtu, bridge);
    if (system(cmd) != 0) {
        fprintf(stderr, "net-helper: '%s' failed\n", cmd);
        exit(1);
    }
    return fd;
}

static void unix_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    strncpy(sa->sun_path, path, sizeof sa->sun_path - 1);
}

static int tap_send(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: net-helper tap-send SOCKET IFNAME BRIDGE MTU\n");
        return 2;
    }
    int tapfd = make_tap(argv[2], argv[3], atoi(argv[4]));
    struct sockaddr_un sa;
    unix_addr(&sa, argv[1]);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    char byte = 0, ctrl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &tapfd, sizeof(int));
    if (sendmsg(s, &msg, 0) != 1)
        die("sendmsg");
    return 0;
}

static void place_fd(int fd, int want);

static int tap_recv(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: net-helper tap-recv SOCKET FD -- CMD...\n");
        return 2;
    }
    struct sockaddr_un sa;
    unix_addr(&sa, argv[1]);
    unlink(argv[1]);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0)
        die("listen");
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        die("accept");
    char byte, ctrl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    if (recvmsg(s, &msg, MSG_CMSG_CLOEXEC) != 1)
        die("recvmsg");
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) {
        fprintf(stderr, "net-helper: no fd received\n");
        return 1;
    }
    int tapfd;
    memcpy(&tapfd, CMSG_DATA(c), sizeof(int));
    close(s);
    close(l);
    unlink(argv[1]);
    place_fd(tapfd, atoi(argv[2]));
    execvp(argv[4], argv + 4);
    die("exec");
    return 1;
}

static int tap(int argc, char **argv)
{
    if (argc < 7 || strcmp(argv[5], "--") != 0) {
        fprintf(stderr, "usage: net-helper tap IFNAME BRIDGE MTU FD -- CMD...\n");
        return 2;
    }
    int want = atoi(argv[4]);
    int fd = make_tap(argv[1], argv[2], atoi(argv[3]));
    place_fd(fd, want);
    execvp(argv[6], argv + 6);
    die("exec");
    return 1;
}

static int pair(int argc, char **argv)
{
    int sep = 0;
    for (int i = 4; i < argc; i++)
        if (strcmp(argv[i], "---") == 0)
            sep = i;
    if (argc < 7 || strcmp(argv[3], "--") != 0 || sep == 0 || sep == 4 || sep == argc - 1) {
        fprintf(stderr, "usage: net-helper pair FD_A FD_B -- CMD_A... --- CMD_B...\n");
        return 2;
    }
    argv[sep] = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair");
    /* passt enlarges the buffers of a socket it accepts itself, not of one
     * given with --fd: without this, host -> guest runs at a sixth of the
     * speed (the kernel caps the request at net.core.[rw]mem_max). */
    int big = 1 << 30;
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    }
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        place_fd(sv[0], atoi(argv[1]));
        execvp(argv[4], argv + 4);
        die("exec A");
    }
    place_fd(sv[1], atoi(argv[2]));
    execvp(argv[sep + 1], argv + sep + 1);
    die("exec B");
    return 1;
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon - s >= (long)sizeof host)
        return -1;
    memcpy(host, s, colon - s);
    host[colon - s] = 0;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(atoi(colon + 1));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

struct pipe_job {
    int from, to;
    int *refs; /* both directions share the two sockets */
    pthread_mutex_t *lock;
};

static void *relay(void *arg)
{
    struct pipe_job *j = arg;
    int p[2];
    if (pipe2(p, O_CLOEXEC) == 0) {
        fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        for (;;) {
            ssize_t n = splice(j->from, NULL, p[1], NULL, 1 << 20, SPLICE_F_MOVE);
            if (n <= 0)
                break;
            while (n > 0) {
                ssize_t m = splice(p[0], NULL, j->to, NULL, n, SPLICE_F_MOVE);
                if (m <= 0)
                    goto out;
                n -= m;
            }
        }
    out:
        close(p[0]);
        close(p[1]);
    }
    shutdown(j->to, SHUT_WR);
    pthread_mutex_lock(j->lock);
    int last = --*j->refs == 0;
    pthread_mutex_unlock(j->lock);
    if (last) {
        close(j->from);
        close(j->to);
        free(j->refs);
        free(j->lock);
    }
    free(j);
    return NULL;
}

static int proxy(int argc, char **argv)
{
    struct sockaddr_in lsa, tsa;
    if (argc < 3 || parse_addr(argv[1], &lsa) || parse_addr(argv[2], &tsa)) {
        fprintf(stderr, "usage: net-helper proxy LISTEN_IP:PORT TARGET_IP:PORT [NETNS [USERNS]]\n");
        return 2;
    }
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&lsa, sizeof lsa) < 0 || listen(l, 128) < 0)
        die("listen");
    /* Join the user namespace first: it owns the network namespace. */
    for (int i = argc - 1; i >= 3; i--) {
        int ns = open(argv[i], O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, 0) < 0)
            die(argv[i]);
        close(ns);
    }
    signal(SIGPIPE, SIG_IGN);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (t < 0 || connect(t, (struct sockaddr *)&tsa, sizeof tsa) < 0) {
            close(c);
            if (t >= 0)
                close(t);
            continue;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int *refs = malloc(sizeof *refs);
        pthread_mutex_t *lock = malloc(sizeof *lock);
        *refs = 2;
        pthread_mutex_init(lock, NULL);
        int ends[2][2] = {{c, t}, {t, c}};
        for (int d = 0; d < 2; d++) {
            struct pipe_job *j = malloc(sizeof *j);
            *j = (struct pipe_job){ends[d][0], ends[d][1], refs, lock};
            pthread_t th;
            pthread_create(&th, NULL, relay, j);
            pthread_detach(th);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "tap") == 0)
        return tap(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "tap-send") == 0)
        return tap_send(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "tap-recv") == 0)
        return tap_recv(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "pair") == 0)
        return pair(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "proxy") == 0)
        return proxy(argc - 1, argv + 1);
    fprintf(stderr, "usage: net-helper tap|tap-send|tap-recv|pair|proxy ...\n");
    return 2;
}
