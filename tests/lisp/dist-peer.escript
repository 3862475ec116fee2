#!/usr/bin/env escript
%%! -noshell
%% dist-peer.escript - the Erlang node of tests/lisp/distribution-tests.lisp.
%%
%%   escript dist-peer.escript NAME COOKIE LISP-NODE
%%
%% Becomes the node NAME (short names), registers the process `peer', sends
%% {peer_ready, self()} to the process registered as `wkt' on LISP-NODE and
%% serves the commands below.  It halts on {stop}, or after 120 seconds
%% without a command (so that a test run that died leaves nothing behind).
-mode(compile).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2]).

main([Name, Cookie, LispNode]) ->
    %% A tick every second, so a net_ticktime of 4 s: a connection whose
    %% other end does not answer ticks is down within about 5 s (a Lisp
    %% test idles for longer).
    {ok, _} = net_kernel:start([list_to_atom(Name), shortnames, 1000]),
    4 = net_kernel:get_net_ticktime(),
    erlang:set_cookie(node(), list_to_atom(Cookie)),
    register(peer, self()),
    {wkt, list_to_atom(LispNode)} ! {peer_ready, self()},
    loop().

loop() ->
    receive
        {stop} ->
            halt(0);
        Command ->
            serve(Command),
            loop()
    after 120000 ->
        halt(1)
    end.

%% Echo: the term back, as it came.
serve({echo, From, Term}) ->
    From ! Term;
%% The same pid twice, in two messages.
serve({self_twice, From}) ->
    From ! {me, self()},
    From ! {me, self()};
%% term_to_binary of test case N (below).
serve({encode, From, N}) ->
    From ! {encoded, N, term_to_binary(term(N))};
%% Whether Bytes decode to test case N.
serve({check, From, N, Bytes}) ->
    From ! {checked, N, (catch binary_to_term(Bytes)) =:= term(N)};
%% Send 1..Count to To, in order.
serve({count_to, To, Count}) ->
    lists:foreach(fun(I) -> To ! {n, I} end, lists:seq(1, Count));
%% 1..Count as bare integers, every tenth as {n, I} instead: the node's
%% fast path takes the integers, its Lisp path the tuples (dist.c).
serve({mixed_count_to, To, Count}) ->
    lists:foreach(fun(I) when I rem 10 =:= 0 -> To ! {n, I};
                     (I) -> To ! I
                  end, lists:seq(1, Count));
%% Receive {n, 1}..{n, Count}; answer whether they came in order.
serve({expect_count, From, Count}) ->
    From ! {in_order, expect(1, Count)};
%% Like expect_count, but keeps the answer in a process registered as
%% count_result, which gives it to whoever sends it {result, From}.
%% (registered before the counting starts: a request that comes through a
%% new connection may overtake the messages of the old one).
serve({expect_count_keep, Count}) ->
    Keeper = spawn(fun() ->
                           receive {done, Result} ->
                                   receive {result, F} -> F ! {count_result, Result}
                                   after 60000 -> ok end
                           end
                   end),
    catch unregister(count_result),
    register(count_result, Keeper),
    Keeper ! {done, expect(1, Count)};
%% Answer with the size of a binary and whether it is bytes 0..255 over
%% and over.
serve({measure, From, Bin}) ->
    Size = byte_size(Bin),
    Pattern = binary:copy(list_to_binary(lists:seq(0, 255)), Size div 256),
    From ! {measured, Size, Bin =:= Pattern};
%% Send a binary of Size bytes, each Byte.
serve({make_binary, From, Size, Byte}) ->
    From ! {binary, binary:copy(<<Byte>>, Size)};
%% exit(Pid, Reason).
serve({exit, Pid, Reason}) ->
    exit(Pid, Reason);
%% A process that traps exits and reports to From the exit signal it gets.
serve({trapper, From}) ->
    Me = self(),
    P = spawn(fun() ->
                  process_flag(trap_exit, true),
                  Me ! {trapper_ready, self()},
                  receive {'EXIT', Who, Why} -> From ! {trapped, Who, Why} end
              end),
    receive {trapper_ready, P} -> From ! {trapper, P} end;
%% A process that reports to From how it ends.
serve({watched, From}) ->
    P = spawn(fun() -> receive never -> ok end end),
    spawn(fun() ->
              Ref = monitor(process, P),
              From ! {watched, P},
              receive {'DOWN', Ref, process, P, Why} -> From ! {ended, P, Why} end
          end);
%% A registered process that forwards what it gets to From.
serve({forwarder, From, Name}) ->
    Me = self(),
    spawn(fun() ->
              register(Name, self()),
              Me ! registered,
              receive M -> From ! {forwarded, M} end
          end),
    receive registered -> From ! {forwarder_ready, Name} end;
%% Send Msg to the registered name on Node.
serve({send_to_name, Name, Node, Msg}) ->
    {Name, Node} ! Msg;
%% A process registered as node_watch that monitors From's node and
%% answers {seen, F} with {seen, Down}, Down whether that node went down.
serve({watch_node, From}) ->
    Me = self(),
    spawn(fun() ->
              register(node_watch, self()),
              monitor_node(node(From), true),
              Me ! watching,
              watch(false)
          end),
    receive watching -> From ! {watching} end;
%% A process that traps exits, links to LispPid and reports the exit
%% signal the link brings.
serve({link_to, From, LispPid}) ->
    spawn(fun() ->
              process_flag(trap_exit, true),
              link(LispPid),
              From ! {linked, self()},
              receive {'EXIT', LispPid, Why} -> From ! {link_exit, LispPid, Why}
              after 60000 -> ok end
          end);
%% A process (linked to LispPid unless that is none) that exits with
%% Reason when it gets {go, Reason}.
serve({exiter, From, LispPid}) ->
    spawn(fun() ->
              case LispPid of none -> ok; _ -> link(LispPid) end,
              From ! {exiter, self()},
              receive {go, Reason} -> exit(Reason) after 60000 -> ok end
          end);
%% A process that monitors LispPid and reports the 'DOWN' it gets.
serve({monitor_lisp, From, LispPid}) ->
    spawn(fun() ->
              Ref = monitor(process, LispPid),
              From ! {monitoring},
              receive {'DOWN', Ref, process, _, Why} -> From ! {lisp_down, Why}
              after 60000 -> ok end
          end);
%% How many processes monitor P (0 once it has ended).
serve({monitored_by, From, P}) ->
    Count = case process_info(P, monitored_by) of
                {monitored_by, Ms} -> length(Ms);
                undefined -> 0
            end,
    From ! {monitored_by, Count};
%% The links of process P.
serve({links_of, From, P}) ->
    Links = case process_info(P, links) of
                {links, Ls} -> Ls;
                undefined -> []
            end,
    From ! {links, Links};
%% Asks the spawner of Node to spawn Package::Name on Args.
serve({spawn_on, From, Node, Package, Name, Args}) ->
    From ! {spawn_result, (catch gen_server:call({workers_spawner, Node},
                                                 {spawn, Package, Name, Args, []}))};
%% Refuses handshakes from From's node for Ms milliseconds (another
%% cookie for that node meanwhile).
serve({refuse_for, From, Ms}) ->
    Node = node(From),
    Cookie = erlang:get_cookie(),
    erlang:set_cookie(Node, list_to_atom("not-" ++ atom_to_list(Cookie))),
    spawn(fun() -> timer:sleep(Ms), erlang:set_cookie(Node, Cookie) end),
    From ! {refusing};
%% A gen_server registered as kv_erl (the callbacks are below).
serve({start_kv, From}) ->
    {ok, Pid} = gen_server:start({local, kv_erl}, ?MODULE, [], []),
    From ! {kv_started, Pid};
%% gen_server:call({Name, Node}, Request) into the Lisp node.
serve({gen_call, From, Name, Node, Request}) ->
    From ! {gen_call_reply, (catch gen_server:call({Name, Node}, Request, 20000))};
%% A call nobody answers: tells the Lisp node's wkt that it arrived.
serve({'$gen_call', {Pid, _Tag}, hang}) ->
    {wkt, node(Pid)} ! {hanging};
serve(_) ->
    ok.

init([]) -> {ok, #{}}.
handle_call({put, K, V}, _From, State) -> {reply, ok, State#{K => V}};
handle_call({get, K}, _From, State) -> {reply, maps:get(K, State, undefined), State}.
handle_cast(_, State) -> {noreply, State}.

watch(Down) ->
    receive
        {nodedown, _} -> watch(true);
        {seen, F} -> F ! {seen, Down}, watch(Down)
    end.

expect(I, Count) when I > Count ->
    true;
expect(I, Count) ->
    receive
        {n, I} -> expect(I + 1, Count);
        {n, _} -> false
    after 30000 -> false
    end.

%% The terms of the encoding tests, by number; the Lisp side has the same
%% table (distribution-tests.lisp, *TERM-CASES*).
term(1) -> 0;
term(2) -> 255;
term(3) -> 256;
term(4) -> -1;
term(5) -> 2147483647;
term(6) -> -2147483648;
term(7) -> 2147483648;
term(8) -> 123456789012345678901234567890;
term(9) -> -123456789012345678901234567890;
term(10) -> 1 bsl 2100;
term(11) -> 1.5;
term(12) -> -2.25e-300;
term(13) -> foo;
term(14) -> 'Foo';
term(15) -> 'FOO';
term(16) -> true;
term(17) -> [];
term(18) -> list_to_atom([16#3bb, 16#3c6, $x]);
term(19) -> list_to_atom(lists:duplicate(255, $a));
term(20) -> <<"h", 16#c3, 16#a9, "llo">>;
term(21) -> <<>>;
term(22) -> binary:copy(<<7>>, 1000000);
term(23) -> [1, 2 | 3];
term(24) -> [1, [2, [3]], {}];
term(25) -> {1, {foo, <<1, 2>>}, [a | b]};
term(26) -> list_to_tuple(lists:seq(1, 300));
term(27) -> #{foo => 1, <<"k">> => {1, 2}, 3 => [4]};
term(28) -> [97, 98, 99];
term(29) -> binary_to_term(<<131, 88, 119, 5, "a@b.c", 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9>>);
term(30) -> binary_to_term(<<131, 90, 0, 3, 119, 5, "a@b.c", 0, 0, 0, 9,
                             0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3>>);
term(31) -> lists:seq(1, 70000).
