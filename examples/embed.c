/* embed: boots a kernel through libcrosvm's C ABI from an ordinary poll()
 * event loop and prints the guest's console.
 *
 *   embed                          the built-in demo guest
 *   embed KERNEL [INITRD [PARAMS]] e.g. embed bzImage initrd.img "console=ttyS0"
 *
 * Callbacks are dispatched on this thread (CROSVM_CALLBACKS_ON_DISPATCH):
 * the loop watches the VM's event fd and calls crosvm_vm_dispatch(). Ctrl-C
 * asks the VM to stop without blocking the loop. */
#include <crosvm/crosvm.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct app {
  int done;
  crosvm_exit_reason reason;
};

static void on_console(const uint8_t *data, size_t length, void *userdata) {
  (void)userdata;
  fwrite(data, 1, length, stdout);
  fflush(stdout);
}

static void on_exit_reason(crosvm_exit_reason reason, void *userdata) {
  struct app *app = userdata;
  app->reason = reason;
  app->done = 1;
}

static int fail(const char *what) {
  fprintf(stderr, "embed: %s: %s\n", what, crosvm_error_message());
  return 1;
}

int main(int argc, char **argv) {
  struct app app = {0, CROSVM_EXIT_NONE};
  crosvm_config *config;
  if (crosvm_config_create(&config) != CROSVM_OK) return fail("configuration");
  int configured = argc > 1 ? crosvm_config_set_kernel(config, argv[1]) : crosvm_config_set_demo_kernel(config);
  if (configured == CROSVM_OK && argc > 2) configured = crosvm_config_set_initrd(config, argv[2]);
  if (configured == CROSVM_OK && argc > 3) configured = crosvm_config_append_params(config, argv[3]);
  crosvm_serial_options serial = CROSVM_SERIAL_OPTIONS_INIT;
  serial.type = CROSVM_SERIAL_CALLBACK;
  serial.callback = on_console;
  serial.flags = CROSVM_SERIAL_CONSOLE;
  if (configured == CROSVM_OK) configured = crosvm_config_add_serial(config, &serial);
  if (configured == CROSVM_OK) configured = crosvm_config_set_callback_mode(config, CROSVM_CALLBACKS_ON_DISPATCH);
  if (configured == CROSVM_OK) configured = crosvm_config_set_exit_callback(config, on_exit_reason, &app);
  if (configured != CROSVM_OK) {
    const int status = fail("configuration");  /* reads the message before the next call */
    crosvm_config_destroy(config);
    return status;
  }

  crosvm_vm *vm;
  int created = crosvm_vm_create(&vm, config);
  crosvm_config_destroy(config);
  if (created != CROSVM_OK) return fail("cannot create the VM");

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, NULL); /* before the VM's threads exist */
  int signals = signalfd(-1, &stop_signals, SFD_CLOEXEC);

  int events;
  if (crosvm_vm_event_fd(&events, vm) != CROSVM_OK || crosvm_vm_start(vm) != CROSVM_OK) {
    fail("cannot start the VM");
    crosvm_vm_destroy(vm);
    return 1;
  }
  while (!app.done) {
    struct pollfd fds[2] = {{events, POLLIN, 0}, {signals, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      struct signalfd_siginfo info;
      if (read(signals, &info, sizeof(info)) == (ssize_t)sizeof(info)) crosvm_vm_request_stop(vm);
    }
    if (fds[0].revents & POLLIN) crosvm_vm_dispatch(NULL, vm);
  }
  fprintf(stderr, "embed: the VM stopped: %s\n", crosvm_vm_exit_message(vm));
  crosvm_vm_destroy(vm);
  close(signals);
  return app.reason == CROSVM_EXIT_POWEROFF || app.reason == CROSVM_EXIT_STOPPED ? 0 : 1;
}
