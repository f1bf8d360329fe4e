// vsock-io: the test guest's vsock tool (busybox has none), static so the
// initramfs needs no libraries.
//
//   vsock-io cid                 prints the guest's own CID
//   vsock-io listen PORT         accepts one connection, then relays
//   vsock-io connect CID PORT    connects, then relays
//   vsock-io echo PORT COUNT     accepts COUNT connections, each echoed by a
//                                process of its own until its peer closes;
//                                prints "echoed COUNT" once all are done
//   vsock-io serve PORT COMMAND  accepts connections for ever, each running
//                                sh -c COMMAND with the connection as its
//                                stdin, stdout and stderr (a command
//                                channel, as socat's EXEC)
//
// Relaying copies stdin to the socket (shutting down the socket's sending
// side at stdin's end) and the socket to stdout, until both have ended.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char* what) {
  fprintf(stderr, "vsock-io: %s: %s\n", what, strerror(errno));
  exit(1);
}

static unsigned parse_number(const char* text) {
  char* end = NULL;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != 0 || value > 0xffffffffUL) {
    fprintf(stderr, "vsock-io: not a number: %s\n", text);
    exit(2);
  }
  return (unsigned)value;
}

static int write_all(int fd, const char* data, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, data, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return -1;
    data += written;
    length -= (size_t)written;
  }
  return 0;
}

static int listener(unsigned port, int backlog) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY};
  if (bind(fd, (struct sockaddr*)&address, sizeof(address)) != 0) die("bind");
  if (listen(fd, backlog) != 0) die("listen");
  return fd;
}

static int accept_one(int fd) {
  for (;;) {
    int connection = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (connection >= 0) return connection;
    if (errno != EINTR) die("accept");
  }
}

static void relay(int connection) {
  char buffer[65536];
  struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = connection, .events = POLLIN}};
  int input_open = 1;
  int peer_open = 1;
  while (input_open || peer_open) {
    fds[0].fd = input_open ? STDIN_FILENO : -1;
    fds[1].fd = peer_open ? connection : -1;
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (input_open && (fds[0].revents & (POLLIN | POLLHUP)) != 0) {
      ssize_t got = read(STDIN_FILENO, buffer, sizeof(buffer));
      if (got < 0 && errno != EINTR) die("read stdin");
      if (got == 0) {
        input_open = 0;
        if (shutdown(connection, SHUT_WR) != 0) die("shutdown");
      } else if (got > 0 && write_all(connection, buffer, (size_t)got) != 0) {
        die("send");
      }
    }
    if (peer_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t got = read(connection, buffer, sizeof(buffer));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) die("receive");
      if (got == 0) {
        peer_open = 0;  // the peer sends no more; what stdin has still goes
      } else if (write_all(STDOUT_FILENO, buffer, (size_t)got) != 0) {
        die("write stdout");
      }
    }
  }
  close(connection);
}

static void echo(int connection) {
  char buffer[65536];
  for (;;) {
    ssize_t got = read(connection, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) die("receive");
    if (got == 0) break;
    if (write_all(connection, buffer, (size_t)got) != 0) die("send");
  }
  close(connection);
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "cid") == 0) {
    int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("/dev/vsock");
    unsigned cid = 0;
    if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) != 0) die("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
    printf("%u\n", cid);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "listen") == 0) {
    int fd = listener(parse_number(argv[2]), 1);
    int connection = accept_one(fd);
    close(fd);
    relay(connection);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "connect") == 0) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_vm address = {
        .svm_family = AF_VSOCK, .svm_port = parse_number(argv[3]), .svm_cid = parse_number(argv[2])};
    if (connect(fd, (struct sockaddr*)&address, sizeof(address)) != 0) die("connect");
    relay(fd);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "echo") == 0) {
    unsigned count = parse_number(argv[3]);
    int fd = listener(parse_number(argv[2]), (int)count);
    for (unsigned i = 0; i < count; ++i) {
      int connection = accept_one(fd);
      pid_t child = fork();
      if (child < 0) die("fork");
      if (child == 0) {
        close(fd);
        echo(connection);
        _exit(0);
      }
      close(connection);
    }
    close(fd);
    unsigned failed = 0;
    for (unsigned i = 0; i < count; ++i) {
      int status = 0;
      if (wait(&status) < 0) die("wait");
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    printf(failed == 0 ? "echoed %u\n" : "echo failed on %u\n", failed == 0 ? count : failed);
    return failed == 0 ? 0 : 1;
  }
  if (argc == 4 && strcmp(argv[1], "serve") == 0) {
    signal(SIGCHLD, SIG_IGN);  // children are reaped by the kernel
    int fd = listener(parse_number(argv[2]), 16);
    for (;;) {
      int connection = accept_one(fd);
      pid_t child = fork();
      if (child < 0) die("fork");
      if (child == 0) {
        close(fd);
        for (int target = 0; target < 3; ++target) {
          if (dup2(connection, target) < 0) die("dup2");
        }
        execl("/bin/sh", "sh", "-c", argv[3], (char*)NULL);
        die("exec /bin/sh");
      }
      close(connection);
    }
  }
  fprintf(stderr, "usage: vsock-io cid | listen PORT | connect CID PORT | echo PORT COUNT | serve PORT COMMAND\n");
  return 2;
}
