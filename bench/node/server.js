// Node socket.io 4.8 as its users run it: `new Server(httpServer)`, default options, with the
// handlers bench/compare.py gives every server:
//   "relay" {to, ...}  ->  io.to(to).emit("msg", data)   (one delivery, to the sid in `to`)
//   "bcast" data       ->  io.emit("msg", data)          (one delivery to every client)
// Usage: node server.js PORT
"use strict";

const { createServer } = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const httpServer = createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  socket.on("relay", (data) => {
    io.to(data.to).emit("msg", data);
  });
  socket.on("bcast", (data) => {
    io.emit("msg", data);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`node socket.io ${require("socket.io/package.json").version} on ${port}`);
});

process.on("SIGTERM", () => process.exit(0));
