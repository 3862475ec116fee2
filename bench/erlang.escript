#!/usr/bin/env escript
%% -*- erlang -*-
%%! +P 2000000
%%
%% erlang.escript - the benchmarks as Erlang/OTP processes, the reference
%% workers is measured against.  Same sizes and RESULT lines as the Lisp
%% programs (see bench/common.lisp):
%%
%%   escript bench/erlang.escript ping-pong
%%   WK_BENCH_SCALE=0.05 escript bench/erlang.escript ping-pong
%%
%% Compiled (not interpreted) by escript, default schedulers (one per
%% online CPU); +P raised so that a million processes fit.
-mode(compile).

main([Bench]) ->
    case lists:member(Bench, benchmarks()) of
        true -> bench(Bench), halt(0);
        false ->
            io:format(standard_error, "unknown benchmark ~s; known: ~s~n",
                      [Bench, lists:join(" ", benchmarks())]),
            halt(1)
    end;
%% The other node of the dist-* rows (an ECL or Erlang driver starts it).
main(["dist-serve", Name, Cookie, Driver]) ->
    dist_serve(Name, Cookie, Driver);
main(_) ->
    io:format(standard_error, "usage: escript bench/erlang.escript BENCHMARK~n", []),
    halt(2).

benchmarks() ->
    ["spawn", "fork-join", "ping-pong", "thread-ring", "counting", "fan-in",
     "big", "fib", "pmap", "memory", "max-idle",
     "fn-ping-pong", "fn-thread-ring", "fn-memory", "preempt-latency",
     "dist-ping-pong", "dist-throughput", "place-spawn"].

%%% Scaffolding.

scale() ->
    case os:getenv("WK_BENCH_SCALE") of
        false -> 1;
        "" -> 1;
        Text ->
            try list_to_float(Text)
            catch error:badarg -> list_to_integer(Text)
            end
    end.

scaled(N) -> scaled(N, 1).
scaled(N, Min) -> max(Min, round(N * scale())).

notes([]) -> "";
notes(Notes) -> " " ++ lists:join("; ", Notes).

result(Bench, Value, Unit, N) -> result(Bench, Value, Unit, N, []).
result(Bench, Value, Unit, N, Notes) ->
    Name = case get(result_name) of undefined -> Bench; Other -> Other end,
    io:format("RESULT ~s erlang ~.4f ~s ~b~s~n",
              [Name, float(Value), Unit, N, notes(Notes)]).

now_ns() -> erlang:monotonic_time(nanosecond).

time_ns(Fun) ->
    T0 = now_ns(),
    Fun(),
    now_ns() - T0.

wait_n(_, 0) -> ok;
wait_n(Msg, N) -> receive Msg -> wait_n(Msg, N - 1) end.

rss_kib() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(Status, <<"\n">>, [global]),
                   binary:part(L, 0, min(6, byte_size(L))) =:= <<"VmRSS:">>],
    [_, Kib | _] = binary:split(Line, [<<" ">>, <<"\t">>], [global, trim_all]),
    binary_to_integer(Kib).

%% Waits until every process of Pids is parked in receive.
wait_parked([]) -> ok;
wait_parked([P | Rest] = Pids) ->
    case erlang:process_info(P, status) of
        {status, waiting} -> wait_parked(Rest);
        _ -> timer:sleep(1), wait_parked(Pids)
    end.

parked() -> spawn(fun() -> receive stop -> ok end end).

busy_fib(N) when N < 2 -> N;
busy_fib(N) -> busy_fib(N - 1) + busy_fib(N - 2).

fib_nodes(N) when N =< 2 -> 1;
fib_nodes(N) -> 1 + fib_nodes(N - 1) + fib_nodes(N - 2).

fib_n() -> max(5, 25 + round(math:log(float(scale())) / math:log(1.618))).

%%% The benchmarks.

bench("spawn") ->
    N = scaled(100000),
    Main = self(),
    T = time_ns(fun() ->
                        spawn_n(N, fun() -> Main ! done end),
                        wait_n(done, N)
                end),
    result("spawn", T / N / 1000, "us/spawn", N);

bench("place-spawn") ->
    %% spawn/4 on a peer node of this machine (peer:start, OTP 25), one
    %% after the other, each process sending back one message: the peer of
    %% SPAWN-ON to a place.
    N = scaled(2000),
    os:cmd("epmd -daemon"),
    Name = list_to_atom("wkbench" ++ os:getpid()),
    {ok, _} = net_kernel:start([Name, shortnames]),
    {ok, Peer, Node} = peer:start(#{name => list_to_atom(atom_to_list(Name) ++ "_peer")}),
    Main = self(),
    Once = fun() ->
                   spawn(Node, erlang, send, [Main, ran]),
                   receive ran -> ok end
           end,
    [Once() || _ <- lists:seq(1, 50)],
    T = time_ns(fun() -> [Once() || _ <- lists:seq(1, N)] end),
    peer:stop(Peer),
    result("place-spawn", T / N / 1000, "us/spawn", N, ["spawn/4 on a peer node"]);

bench("fork-join") ->
    N = scaled(40000),
    Main = self(),
    T = time_ns(fun() -> fork_join(N, Main), wait_fj(N) end),
    result("fork-join", T / N / 1000, "us/worker", N);

%% The fn- rows measure workers written as functions (a RECEIVE nested in
%% a function); an Erlang process is always written so: the same programs.
bench("fn-" ++ Base) ->
    put(result_name, "fn-" ++ Base),
    bench(Base);

bench("preempt-latency") ->
    %% One scheduler online, shared by a CPU-bound process and the pair.
    N = scaled(2000),
    Online = erlang:system_flag(schedulers_online, 1),
    Main = self(),
    Hog = spawn(fun() -> spin(0) end),
    Pong = spawn(fun pong/0),
    Ping = spawn(fun() -> receive go -> ping(Pong, N), Main ! done end end),
    T = time_ns(fun() -> Ping ! go, receive done -> ok end end),
    Pong ! stop,
    exit(Hog, kill),
    erlang:system_flag(schedulers_online, Online),
    result("preempt-latency", T / N / 1000, "us/round-trip", N,
           ["1 scheduler shared with a CPU-bound process"]);

%% Distribution: this node and a second escript node (dist-serve), on
%% this machine; the same protocol as bench/dist-peer.lisp.
bench("dist-ping-pong") ->
    N = scaled(20000),
    with_dist_peer(
      fun(Peer) ->
              T = time_ns(fun() -> remote_ping(Peer, N) end),
              result("dist-ping-pong", T / N, "ns/round-trip", N)
      end);

bench("dist-throughput") ->
    N = scaled(200000),
    with_dist_peer(
      fun(Peer) ->
              T = time_ns(fun() ->
                                  Peer ! [count, self(), N],
                                  send_seq(Peer, 1, N),
                                  receive [done, N] -> ok end
                          end),
              result("dist-throughput", N * 1000 / T, "Mmsg/s", N)
      end);

bench("ping-pong") ->
    N = scaled(200000),
    Main = self(),
    Pong = spawn(fun pong/0),
    Ping = spawn(fun() -> receive go -> ping(Pong, N), Main ! done end end),
    T = time_ns(fun() -> Ping ! go, receive done -> ok end end),
    Pong ! stop,
    result("ping-pong", T / N, "ns/round-trip", N);

bench("thread-ring") ->
    Hops = scaled(1000000),
    Size = 503,
    Main = self(),
    Ring = [spawn(fun() -> receive {next, Next} -> ring(Next, Main) end end)
            || _ <- lists:seq(1, Size)],
    [P ! {next, Next} || {P, Next} <- lists:zip(Ring, tl(Ring) ++ [hd(Ring)])],
    T = time_ns(fun() -> hd(Ring) ! Hops, receive done -> ok end end),
    [P ! stop || P <- Ring],
    result("thread-ring", T / Hops, "ns/hop", Hops);

bench("counting") ->
    N = scaled(1000000),
    Main = self(),
    Counter = spawn(fun() -> counter(0) end),
    Producer = spawn(fun() ->
                             receive go -> ok end,
                             send_n(N, Counter, inc),
                             Counter ! {get, self()},
                             receive C -> Main ! {done, C} end
                     end),
    T = time_ns(fun() -> Producer ! go, receive {done, N} -> ok end end),
    result("counting", N * 1000 / T, "Mmsg/s", N);

bench("fan-in") ->
    PerSender = scaled(100000),
    Senders = 16,
    Total = Senders * PerSender,
    Main = self(),
    T = time_ns(fun() ->
                        Receiver = spawn(fun() -> fan_in(0, Total, Main) end),
                        spawn_n(Senders, fun() -> send_n(PerSender, Receiver, msg) end),
                        receive done -> ok end
                end),
    result("fan-in", Total * 1000 / T, "Mmsg/s", PerSender);

bench("big") ->
    Pings = scaled(20000),
    Size = 120,
    Main = self(),
    Workers = list_to_tuple([spawn(fun() -> big_start(Pings, Main) end)
                             || _ <- lists:seq(1, Size)]),
    T = time_ns(fun() ->
                        [P ! {peers, Workers} || P <- tuple_to_list(Workers)],
                        wait_n(done, Size)
                end),
    [P ! stop || P <- tuple_to_list(Workers)],
    result("big", 2 * Size * Pings * 1000 / T, "Mmsg/s", Pings);

bench("fib") ->
    N = fib_n(),
    Main = self(),
    T = time_ns(fun() ->
                        spawn(fun() -> fib(N, Main) end),
                        receive _ -> ok end
                end),
    result("fib", T / fib_nodes(N) / 1000, "us/worker", N);

bench("pmap") ->
    Items = scaled(64, 4),
    Depth = 27,
    Cpus = erlang:system_info(schedulers_online),
    erlang:system_flag(schedulers_online, 1),
    One = time_ns(fun() -> pmap(Items, Depth) end),
    erlang:system_flag(schedulers_online, Cpus),
    All = time_ns(fun() -> pmap(Items, Depth) end),
    Note = [lists:flatten(io_lib:format("~b schedulers vs 1", [Cpus]))],
    result("pmap", All / 1000000, "ms", Items, Note),
    result("pmap-speedup", One / All, "x", Items, Note);

bench("memory") ->
    N = scaled(100000),
    erlang:garbage_collect(),
    Before = rss_kib(),
    Pids = [parked() || _ <- lists:seq(1, N)],
    wait_parked(Pids),
    result("memory", (rss_kib() - Before) / N, "KiB/worker", N);

bench("max-idle") ->
    N = scaled(1000000),
    T0 = now_ns(),
    {Count, Pids, Why} = spawn_parked(N, 0, []),
    wait_parked(Pids),
    Secs = (now_ns() - T0) / 1.0e9,
    Notes = [lists:flatten(io_lib:format("~.1f s to spawn and park; RSS ~b MiB",
                                         [Secs, rss_kib() div 1024]))]
        ++ [Why || Why =/= ""],
    result("max-idle", Count, "workers", N, Notes).

%%% The processes.

spawn_n(0, _) -> ok;
spawn_n(N, Fun) -> spawn(Fun), spawn_n(N - 1, Fun).

send_n(0, _, _) -> ok;
send_n(N, To, Msg) -> To ! Msg, send_n(N - 1, To, Msg).

%% Savina fjc: each process takes one message, computes on it, exits.
fork_join(0, _) -> ok;
fork_join(N, Main) ->
    P = spawn(fun() ->
                      receive X -> Main ! {done, math:pow(math:sin(X), 2)} end
              end),
    P ! 37.2,
    fork_join(N - 1, Main).

wait_fj(0) -> ok;
wait_fj(N) -> receive {done, _} -> wait_fj(N - 1) end.

spin(I) -> spin(I + 1).

pong() ->
    receive
        {ping, From} -> From ! pong, pong();
        stop -> ok
    end.

ping(_, 0) -> ok;
ping(Pong, K) ->
    Pong ! {ping, self()},
    receive pong -> ping(Pong, K - 1) end.

ring(Next, Main) ->
    receive
        stop -> ok;
        0 -> Main ! done, ring(Next, Main);
        K -> Next ! K - 1, ring(Next, Main)
    end.

counter(Count) ->
    receive
        inc -> counter(Count + 1);
        {get, From} -> From ! Count
    end.

fan_in(Count, Total, Main) ->
    receive
        msg when Count + 1 =:= Total -> Main ! done;
        msg -> fan_in(Count + 1, Total, Main)
    end.

big_start(Pings, Main) ->
    receive {peers, Peers} -> ok end,
    big_ping(Peers),
    big(Pings, Peers, Main).

big_ping(Peers) ->
    element(rand:uniform(tuple_size(Peers)), Peers) ! {ping, self()}.

big(Left, Peers, Main) ->
    receive
        {ping, From} -> From ! pong, big(Left, Peers, Main);
        pong when Left =:= 1 -> Main ! done, big(0, Peers, Main);
        pong -> big_ping(Peers), big(Left - 1, Peers, Main);
        stop -> ok
    end.

fib(N, Parent) when N =< 2 -> Parent ! 1;
fib(N, Parent) ->
    Self = self(),
    spawn(fun() -> fib(N - 1, Self) end),
    spawn(fun() -> fib(N - 2, Self) end),
    receive A -> receive B -> Parent ! A + B end end.

pmap(Items, Depth) ->
    Main = self(),
    Pids = [spawn(fun() -> Main ! {self(), busy_fib(Depth)} end)
            || _ <- lists:seq(1, Items)],
    [receive {P, R} -> R end || P <- Pids].

spawn_parked(0, Count, Pids) -> {Count, Pids, ""};
spawn_parked(N, Count, Pids) ->
    try parked() of
        P -> spawn_parked(N - 1, Count + 1, [P | Pids])
    catch error:system_limit ->
            {Count, Pids, "stopped by the process limit"}
    end.

%%% Distribution.

dist_start(Name, Cookie) ->
    os:cmd("epmd -daemon"),
    {ok, _} = net_kernel:start([list_to_atom(Name), shortnames]),
    erlang:set_cookie(node(), list_to_atom(Cookie)).

with_dist_peer(Fun) ->
    Name = "wkbe" ++ os:getpid(),
    Cookie = "wkbench",
    dist_start(Name, Cookie),
    register(bench_driver, self()),
    Cmd = lists:join(" ", ["escript", escript:script_name(), "dist-serve",
                           Name ++ "p", Cookie, atom_to_list(node())]),
    Me = self(),
    spawn(fun() -> os:cmd(Cmd), Me ! peer_gone end),
    receive [peer_ready, Peer] -> ok after 120000 -> Peer = error(no_peer) end,
    Fun(Peer),
    Peer ! stop,
    receive peer_gone -> ok after 60000 -> ok end.

remote_ping(_, 0) -> ok;
remote_ping(Peer, N) ->
    Peer ! [ping, self()],
    receive pong -> remote_ping(Peer, N - 1) end.

send_seq(_, I, N) when I > N -> ok;
send_seq(Peer, I, N) -> Peer ! I, send_seq(Peer, I + 1, N).

dist_serve(Name, Cookie, Driver) ->
    dist_start(Name, Cookie),
    {bench_driver, list_to_atom(Driver)} ! [peer_ready, self()],
    dist_loop(),
    halt(0).

dist_loop() ->
    receive
        [ping, From] -> From ! pong, dist_loop();
        [count, From, N] -> sink(N), From ! [done, N], dist_loop();
        stop -> ok
    after 300000 -> ok
    end.

sink(0) -> ok;
sink(N) -> receive _ -> sink(N - 1) end.
