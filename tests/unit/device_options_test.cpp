#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "vm/device_options.h"

using crosvm::add_device;
using crosvm::split_key_values;
using crosvm::VmConfig;

namespace {

VmConfig added(std::string_view kind, std::string_view options) {
  VmConfig config;
  auto result = add_device(config, kind, options);
  if (!result) FAIL(result.error().message);
  return config;
}

std::string refused(std::string_view kind, std::string_view options) {
  VmConfig config;
  auto result = add_device(config, kind, options);
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == crosvm::ErrorCode::kInvalidArgument);
  CHECK(config.disks.empty());
  CHECK(config.serials.empty());
  CHECK(config.vhost_user.empty());
  CHECK(config.devices.empty());
  return result.error().message;
}

}  // namespace

TEST_CASE("key=value lists split on commas; a bare key means true; quotes keep commas", "[device-options]") {
  auto items = split_key_values("a=1,,b,c=x=y,d=\"p,q\",e=");
  REQUIRE(items.ok());
  REQUIRE(items->size() == 5);
  CHECK(((*items)[0].key == "a" && (*items)[0].value == "1" && !(*items)[0].bare));
  CHECK(((*items)[1].key == "b" && (*items)[1].value == "true" && (*items)[1].bare));
  CHECK(((*items)[2].key == "c" && (*items)[2].value == "x=y"));
  CHECK(((*items)[3].key == "d" && (*items)[3].value == "p,q"));
  CHECK(((*items)[4].key == "e" && (*items)[4].value.empty()));
  CHECK(split_key_values("")->empty());
  CHECK_FALSE(split_key_values("=x").ok());
  CHECK_FALSE(split_key_values("a=\"open").ok());
  CHECK_FALSE(split_key_values("a=\"x\"y").ok());
}

TEST_CASE("block: crosvm's keys, writable unless ro, a bare first item is the path", "[device-options]") {
  VmConfig config = added("block", "path=c.img,ro=false,id=serial-c");
  REQUIRE(config.disks.size() == 1);
  CHECK(config.disks[0].path == "c.img");
  CHECK_FALSE(config.disks[0].read_only);
  CHECK_FALSE(config.disks[0].root);
  CHECK(config.disks[0].id == "serial-c");

  config = added("block", "d.img,ro,root");
  CHECK(config.disks[0].path == "d.img");
  CHECK(config.disks[0].read_only);
  CHECK(config.disks[0].root);
  CHECK(added("block", "path=\"a,b.img\"").disks[0].path == "a,b.img");
  CHECK(added("block", "path=/x/y=z.img").disks[0].path == "/x/y=z.img");
  // A quoted first item is the path, even one named like a key.
  CHECK(added("block", "\"a,b.img\",ro").disks[0].path == "a,b.img");
  CHECK(added("block", "\"ro\"").disks[0].path == "ro");

  // Defaults as crosvm's: sparse, locked, 512-byte blocks, no backing file.
  const crosvm::DiskConfig plain = added("block", "e.img").disks[0];
  CHECK((plain.sparse && plain.lock && plain.block_size == 512 && !plain.allow_backing && plain.num_queues == 1 &&
         !plain.direct));
  const crosvm::DiskConfig tuned =
      added("block", "e.img,sparse=false,lock=false,block-size=4096,allow-backing,num-queues=4,direct").disks[0];
  CHECK((!tuned.sparse && !tuned.lock && tuned.block_size == 4096 && tuned.allow_backing && tuned.num_queues == 4 &&
         tuned.direct));
}

TEST_CASE("block: bad lists name the kind and the key, and add nothing", "[device-options]") {
  CHECK(refused("block", "ro=true").find("path=") != std::string::npos);
  CHECK(refused("block", "").find("path=") != std::string::npos);
  CHECK(refused("block", "path=x,ro=maybe").find("block: ro must be true or false") != std::string::npos);
  CHECK(refused("block", "path=x,size=3")
            .find("block: unknown key 'size' (known: path, ro, root, id, allow-backing, sparse, lock, block-size, "
                  "num-queues, direct)") !=
        std::string::npos);
  CHECK(refused("block", "path=x,block-size=1000").find("block-size must be 512, 1024, 2048 or 4096") !=
        std::string::npos);
  CHECK(refused("block", "path=x,block-size=8192").find("block-size must be") != std::string::npos);
  CHECK(refused("block", "path=x,num-queues=0").find("num-queues must be 1 to 16, not '0'") != std::string::npos);
  CHECK(refused("block", "path=x,num-queues=17").find("num-queues must be 1 to 16") != std::string::npos);
  CHECK(refused("block", "path=x,id=123456789012345678901").find("20 bytes") != std::string::npos);
  CHECK(refused("block", "path=x,path=y").find("path is given twice") != std::string::npos);
  CHECK(refused("block", "a.img,b.img").find("unknown key 'b.img'") != std::string::npos);
  CHECK(refused("block", "path=\"x").find("not closed") != std::string::npos);
  CHECK(refused("block", "\"x").find("not closed") != std::string::npos);
  // Found by the device_options fuzzer: an empty quoted item was an item without a key.
  CHECK(refused("block", "\"\",").find("an empty quoted value") != std::string::npos);
  CHECK(refused("block", "\"a\"b").find("text after the closing quote") != std::string::npos);
  CHECK(refused("block", "a.img,\"b\"").find("a quoted value needs a key") != std::string::npos);
  // Only true/false keys may stand bare (found by the device_options fuzzer:
  // "path" alone was a disk named "true").
  CHECK(refused("block", "path").find("block: path needs a value (path=...)") != std::string::npos);
  CHECK(refused("block", "a.img,id").find("block: id needs a value") != std::string::npos);
}

TEST_CASE("serial: crosvm's keys and defaults; a port given again replaces it", "[device-options]") {
  VmConfig config = added("serial", "type=file,num=2,path=/tmp/out,console");
  REQUIRE(config.serials.size() == 1);
  const crosvm::SerialConfig& port = config.serials[0];
  CHECK(port.number == 2);
  CHECK(port.output == crosvm::SerialOutput::kFile);
  CHECK(port.path == "/tmp/out");
  CHECK(port.console);
  CHECK_FALSE(port.read_stdin);
  CHECK(port.hardware == crosvm::SerialHardware::kUart);

  const crosvm::SerialConfig plain = added("serial", "").serials.at(0);
  CHECK(plain.number == 1);
  CHECK(plain.output == crosvm::SerialOutput::kStdout);
  CHECK_FALSE(plain.console);

  REQUIRE(add_device(config, "serial", "type=sink,num=2").ok());
  REQUIRE(add_device(config, "serial", "type=sink,num=2,hardware=virtio-console,stdin=on").ok());
  REQUIRE(config.serials.size() == 2);  // UART 2 replaced; virtio console 2 beside it
  CHECK(config.serials[0].output == crosvm::SerialOutput::kSink);
  CHECK(config.serials[1].hardware == crosvm::SerialHardware::kVirtioConsole);
  CHECK(config.serials[1].read_stdin);
  // crosvm's input=: a file's bytes as the port's input.
  CHECK(added("serial", "type=sink,input=/tmp/keys").serials.at(0).input_path == "/tmp/keys");
}

TEST_CASE("serial: bad lists name the problem", "[device-options]") {
  CHECK(refused("serial", "num=9").find("1 to 4") != std::string::npos);
  CHECK(refused("serial", "num=").find("1 to 4") != std::string::npos);
  CHECK(refused("serial", "type=file").find("type=file needs path=") != std::string::npos);
  CHECK(refused("serial", "path=/x").find("path= is for type=file") != std::string::npos);
  CHECK(refused("serial", "stdin,input=/x").find("stdin and input= cannot be combined") != std::string::npos);
  CHECK(refused("serial", "input=").find("input= needs a path") != std::string::npos);
  CHECK(refused("serial", "type=tty").find("stdout, file, sink, syslog, unix or unix-stream") != std::string::npos);
  CHECK(refused("serial", "colour=red").find("unknown key 'colour'") != std::string::npos);
  CHECK(refused("serial", "type").find("serial: type needs a value") != std::string::npos);
  CHECK(refused("serial", "hardware=usb").find("serial, virtio-console or debugcon") != std::string::npos);
  CHECK(refused("serial", "hardware=virtio-console,earlycon").find("earlycon") != std::string::npos);
  CHECK(refused("serial", "hardware=virtio-console,out-timestamp").find("out-timestamp is for UARTs") !=
        std::string::npos);
  CHECK(refused("serial", "out-timestamp=maybe").find("out-timestamp") != std::string::npos);
  CHECK(added("serial", "type=sink,out-timestamp=true").serials[0].out_timestamp);
  CHECK_FALSE(added("serial", "type=sink").serials[0].out_timestamp);
}

TEST_CASE("serial: crosvm's socket and syslog types, debugcon, name, and its underscore spellings",
          "[device-options]") {
  const crosvm::SerialConfig datagrams = added("serial", "type=unix,path=/run/log.sock,name=boot log").serials.at(0);
  CHECK(datagrams.output == crosvm::SerialOutput::kUnix);
  CHECK(datagrams.path == "/run/log.sock");
  CHECK(datagrams.name == "boot log");
  const crosvm::SerialConfig stream =
      added("serial", "type=unix-stream,path=/run/tty.sock,input-unix-stream,hardware=virtio-console").serials.at(0);
  CHECK(stream.output == crosvm::SerialOutput::kUnixStream);
  CHECK(stream.input_unix_stream);
  CHECK(stream.hardware == crosvm::SerialHardware::kVirtioConsole);
  CHECK(added("serial", "type=syslog").serials.at(0).output == crosvm::SerialOutput::kSyslog);
  CHECK(added("serial", "hardware=legacy-virtio-console").serials.at(0).hardware ==
        crosvm::SerialHardware::kVirtioConsole);

  const crosvm::SerialConfig debugcon = added("serial", "hardware=debugcon,type=sink").serials.at(0);
  CHECK(debugcon.hardware == crosvm::SerialHardware::kDebugcon);
  CHECK(debugcon.debugcon_port == 0x402);  // OVMF's
  CHECK(added("serial", "hardware=debugcon,debugcon-port=0xe9").serials.at(0).debugcon_port == 0xe9);
  // crosvm's serde takes these spellings too; they are the same key.
  CHECK(added("serial", "hardware=debugcon,debugcon_port=1026").serials.at(0).debugcon_port == 1026);
  // Any number, as crosvm's serde_keyvalue reads them: 0x, 0o and 0b too.
  CHECK(added("serial", "hardware=debugcon,debugcon-port=0o2002").serials.at(0).debugcon_port == 0x402);
  CHECK(added("block", "a.img,block-size=0b1000000000000").disks.at(0).block_size == 4096);
  CHECK(added("serial", "out_timestamp").serials.at(0).out_timestamp);
  CHECK(refused("serial", "out-timestamp,out_timestamp").find("out-timestamp is given twice") != std::string::npos);
  // crosvm's first item may leave out its key: the type.
  const crosvm::SerialConfig bare = added("serial", "sink,num=2").serials.at(0);
  CHECK(bare.output == crosvm::SerialOutput::kSink);
  CHECK(bare.number == 2);
  CHECK(added("serial", "console").serials.at(0).console);  // a flag stays a flag
  CHECK(refused("serial", "tty,num=2").find("not 'tty'") != std::string::npos);
  // crosvm's underscore spellings of block keys.
  const crosvm::DiskConfig disk = added("block", "a.img,o_direct,block_size=4096").disks.at(0);
  CHECK(disk.direct);
  CHECK(disk.block_size == 4096);
  // A UART and a debugcon of one number are two ports.
  VmConfig both = added("serial", "type=sink,num=1");
  REQUIRE(add_device(both, "serial", "hardware=debugcon,num=1").ok());
  CHECK(both.serials.size() == 2);
}

TEST_CASE("serial: socket and debugcon lists that cannot work are refused", "[device-options]") {
  CHECK(refused("serial", "type=unix").find("type=unix needs path=") != std::string::npos);
  CHECK(refused("serial", "type=unix-stream").find("type=unix-stream needs path=") != std::string::npos);
  CHECK(refused("serial", "type=syslog,path=/dev/log").find("path= is for type=file, unix and unix-stream") !=
        std::string::npos);
  CHECK(refused("serial", "type=unix,path=/x,input-unix-stream").find("input-unix-stream needs type=unix-stream") !=
        std::string::npos);
  CHECK(refused("serial", "type=unix-stream,path=/x,input-unix-stream,stdin").find("cannot be combined") !=
        std::string::npos);
  CHECK(refused("serial", "hardware=debugcon,console").find("debugcon cannot be the kernel's console") !=
        std::string::npos);
  CHECK(refused("serial", "hardware=debugcon,stdin").find("debugcon has no input") != std::string::npos);
  CHECK(refused("serial", "hardware=debugcon,input=/x").find("debugcon has no input") != std::string::npos);
  CHECK(refused("serial", "debugcon-port=0x402").find("debugcon-port is for hardware=debugcon") !=
        std::string::npos);
  for (const char* port : {"65536", "0x10000", "-1", "0x", "12a", ""}) {
    INFO(port);
    CHECK(refused("serial", fmt::format("hardware=debugcon,debugcon-port={}", port)).find("debugcon-port must be") !=
          std::string::npos);
  }
}

TEST_CASE("vhost-user: crosvm's type= and socket=, a bare first item is the type", "[device-options]") {
  VmConfig config = added("vhost-user", "type=block,socket=/run/blk.sock");
  REQUIRE(config.vhost_user.size() == 1);
  CHECK(config.vhost_user[0].type == "block");
  CHECK(config.vhost_user[0].socket == "/run/blk.sock");
  CHECK(config.vhost_user[0].max_queue_size == 256);
  config = added("vhost-user", "fs,socket=/run/fs.sock,tag=share,max-queue-size=1024");
  REQUIRE(config.vhost_user.size() == 1);
  CHECK(config.vhost_user[0].type == "fs");
  CHECK(config.vhost_user[0].tag == "share");
  CHECK(config.vhost_user[0].max_queue_size == 1024);

  CHECK(refused("vhost-user", "type=gpu,socket=/s").find("type must be one of block, fs, rng, net, console, vsock, not 'gpu'") !=
        std::string::npos);
  CHECK(refused("vhost-user", "type=block").find("needs socket=") != std::string::npos);
  CHECK(refused("vhost-user", "type=fs,socket=/s").find("type=fs needs tag=") != std::string::npos);
  CHECK(refused("vhost-user", "type=fs,socket=/s,tag=" + std::string(37, 't')).find("at most 36 bytes") !=
        std::string::npos);
  CHECK(refused("vhost-user", "type=block,socket=/s,tag=x").find("tag= is for type=fs") != std::string::npos);
  for (const char* size : {"0", "100", "65536", "-1", "x"}) {
    CHECK(refused("vhost-user", std::string("block,socket=/s,max-queue-size=") + size).find("max-queue-size") !=
          std::string::npos);
  }
}

TEST_CASE("the registry's kinds are named like any other and built by their own factories", "[device-options]") {
  VmConfig config = added("rng", "");
  REQUIRE(config.devices.size() == 1);
  CHECK(config.devices[0].kind() == "rng");
  CHECK(config.disks.empty());
  CHECK(refused("rng", "bytes=4").find("rng: unknown key 'bytes' (known: none)") != std::string::npos);
  CHECK(refused("rng", "\"open").find("rng: ") == 0);

  for (const crosvm::VirtioKind* kind : crosvm::virtio_kinds()) {
    const crosvm::DeviceKind* named = crosvm::find_device_kind(kind->name);
    REQUIRE(named != nullptr);
    CHECK(named->unit == kind);
    if (kind->open != nullptr) continue;  // needs the host (a TAP): tests of its own
    auto options = crosvm::parse_device_options(*kind, "");
    REQUIRE(options.ok());
    crosvm::DeviceEnvironment environment{crosvm::Logger(), 0, {}};
    auto device = kind->create(*options, environment);
    REQUIRE(device.ok());
    CHECK(!(*device)->queue_max_sizes().empty());
    CHECK(kind->describe(*options, 0).rfind(std::string(kind->name), 0) == 0);
    CHECK(kind->describe(*options, 0) != kind->describe(*options, 1));
  }
}

TEST_CASE("an unknown kind names the known ones; every kind describes its keys", "[device-options]") {
  CHECK(refused("floppy", "path=a").find("unknown device kind 'floppy' (known: block, serial, vhost-user, rng, net, vsock)") !=
        std::string::npos);
  for (const crosvm::DeviceKind& kind : crosvm::device_kinds()) {
    REQUIRE(crosvm::find_device_kind(kind.name) == &kind);
    const std::string text = crosvm::describe_device_kind(kind);
    for (const crosvm::DeviceKey& key : kind.keys) CHECK(text.find(std::string(key.key)) != std::string::npos);
  }
  CHECK(crosvm::find_device_kind("floppy") == nullptr);
}

TEST_CASE("the rng is on unless turned off, in every front end", "[device-options]") {
  CHECK(VmConfig{}.rng);
}
