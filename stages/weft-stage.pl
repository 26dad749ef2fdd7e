#!/usr/bin/perl
# weft-stage.pl: a weft stage for Perl tests (docs/stages.md). Loads the
# modules it is told to once, then forks one child per test on request, so
# each test starts with them already loaded.
#
#   perl weft-stage.pl --socket PATH [-I DIR]... [-M MODULE]...
#
# On stdout, one JSON line: {"t":"ready",...} once the modules are loaded
# and PATH listens (or {"t":"error",...} and exit 1). On each connection to
# PATH, one request line:
#   {"t":"spawn","argv":[...],"env":["K=V",...],"cwd":DIR,"fds":[PATH0,PATH1,PATH2,PATH3]}
# answered {"t":"spawned","pid":N} (or {"t":"error","message":...}), and
# when the child has ended {"t":"exited","pid":N,"status":WAIT_STATUS}. A connection that closes early kills the
# child's process group. The child is in its own process group.
use strict;
use warnings;
use IO::Socket::UNIX;
use IO::Select;
use POSIX ();
use Time::HiRes ();

my ($socket_path, @preload, @inc);
my $stage_name = 'stage';
while (@ARGV) {
  my $a = shift @ARGV;
  if ($a eq '--socket') { $socket_path = shift @ARGV }
  elsif ($a eq '--name') { $stage_name = shift @ARGV }
  elsif ($a =~ /^-I(.*)$/) { push @inc, length $1 ? $1 : shift @ARGV }
  elsif ($a =~ /^-M(.*)$/) { push @preload, length $1 ? $1 : shift @ARGV }
  else { die "weft-stage.pl: unknown argument $a\n" }
}
die "weft-stage.pl: --socket PATH is needed\n" unless $socket_path;

# JSON, the little of it this protocol needs (no modules: the stage must
# not load anything the tests did not ask for).
sub json_str {
  my $s = shift;
  $s =~ s/(["\\])/\\$1/g;
  $s =~ s/\n/\\n/g; $s =~ s/\r/\\r/g; $s =~ s/\t/\\t/g;
  $s =~ s/([\x00-\x1f])/sprintf("\\u%04x", ord $1)/ge;
  return qq("$s");
}
sub json_out {
  my %h = @_;
  return '{' . join(',', map {
    my $v = $h{$_};
    json_str($_) . ':' . (ref $v eq 'ARRAY' ? '[' . join(',', map { json_str($_) } @$v) . ']'
                          : $v =~ /^-?\d+$/ ? $v : json_str($v))
  } sort keys %h) . "}\n";
}
# Parses one JSON value of the request (objects, arrays, strings, numbers).
sub json_in {
  my ($text) = @_;
  my $pos = 0;
  my $value;
  $value = sub {
    $text =~ /\G\s*/gc;
    if ($text =~ /\G\{/gc) {
      my %h;
      $text =~ /\G\s*/gc;
      return \%h if $text =~ /\G\}/gc;
      while (1) {
        my $k = $value->();
        $text =~ /\G\s*:/gc or die "bad JSON: expected :\n";
        $h{$k} = $value->();
        $text =~ /\G\s*/gc;
        next if $text =~ /\G,/gc;
        last if $text =~ /\G\}/gc;
        die "bad JSON object\n";
      }
      return \%h;
    }
    if ($text =~ /\G\[/gc) {
      my @a;
      $text =~ /\G\s*/gc;
      return \@a if $text =~ /\G\]/gc;
      while (1) {
        push @a, $value->();
        $text =~ /\G\s*/gc;
        next if $text =~ /\G,/gc;
        last if $text =~ /\G\]/gc;
        die "bad JSON array\n";
      }
      return \@a;
    }
    if ($text =~ /\G"((?:[^"\\]|\\.)*)"/gc) {
      my $s = $1;
      $s =~ s/\\u([0-9a-fA-F]{4})/chr(hex $1)/ge;
      $s =~ s/\\(.)/$1 eq 'n' ? "\n" : $1 eq 't' ? "\t" : $1 eq 'r' ? "\r" : $1 eq 'b' ? "\b" : $1 eq 'f' ? "\f" : $1/ge;
      return $s;
    }
    return $1 if $text =~ /\G(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)/gc;
    return 1 if $text =~ /\Gtrue/gc;
    return 0 if $text =~ /\Gfalse/gc;
    return undef if $text =~ /\Gnull/gc;
    die "bad JSON value\n";
  };
  my $v = $value->();
  undef $value;
  return $v;
}

$| = 1;
# fds 3-9 stay taken, so nothing of ours (a handle a module clones, our
# sockets) lands where a test's fds go: a child dup2()s onto 0-3.
my @reserved;
for (3 .. 9) {
  open(my $fh, '<', '/dev/null') or last;
  push @reserved, $fh;
}
# Loads what this stage preloads, listens on its socket, says "ready"
# (or "error", and exits). A stage forked from another does it again with
# its own modules, on top of what it inherited.
my (%preloaded, $listen);
sub become_stage {
  my ($name, $path, $inc, $preload) = @_;
  my $t0 = Time::HiRes::time();
  unshift @INC, @$inc;
  # Test2 (Test::More's engine) knows about preloading: in preload mode it
  # sets up no output handles until a child ends it.
  if (grep { /^Test(2|::)/ } @$preload) {
    if (eval { require Test2::API; 1 }) {
      Test2::API::test2_start_preload() unless Test2::API::test2_in_preload();
    }
  }
  for my $m (@$preload) {
    my $file = $m;
    $file =~ s{::}{/}g;
    $file .= '.pm';
    unless (eval { require $file; 1 }) {
      my $err = $@;
      chomp $err;
      print json_out(t => 'error', name => $name, message => "cannot preload $m: $err");
      exit 1;
    }
  }
  require File::Spec;
  %preloaded = map { File::Spec->rel2abs($_) => 1 } grep { defined && !ref } values %INC;
  unlink $path;
  $listen = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 64)
    or do { print json_out(t => 'error', name => $name, message => "cannot listen on $path: $!"); exit 1 };
  $socket_path = $path;
  print json_out(t => 'ready', name => $name, pid => $$, lang => 'perl', socket => $path,
                 preloaded => [sort keys %preloaded],
                 load_ms => int((Time::HiRes::time() - $t0) * 1000));
}
become_stage($stage_name, $socket_path, \@inc, \@preload);

# Children: pid -> its connection. SIGCHLD wakes the select through a pipe.
my %conn_of;
my %pid_of;    # connection (fileno) -> pid
my ($wake_r, $wake_w);
pipe($wake_r, $wake_w) or die "pipe: $!";
$wake_w->autoflush(1);
$SIG{CHLD} = sub { syswrite $wake_w, 'c' };
$SIG{PIPE} = 'IGNORE';
my $running = 1;
$SIG{TERM} = $SIG{INT} = sub { $running = 0; syswrite $wake_w, 't' };
# SIGUSR2: a reload replaces us. No new tests (our socket goes); the ones
# running finish here, then we end.
my $draining = 0;
$SIG{USR2} = sub { $draining = 1; syswrite $wake_w, 'd' };
# Our lifeline: stdin (the runner), or for a stage forked from another, a
# pipe from that one. Its end is ours. Only the first stage reads
# commands from stdin: {"t":"fork_stage",...}.
my $lifeline = \*STDIN;
my $commands = '';
my @nested_w;  # our ends of the pipes to the stages forked from us
my $sel = IO::Select->new($listen, $wake_r, $lifeline);
my %buf;

# A stage built on this one: a child that keeps what we loaded, loads
# more, and serves on its own socket. Returns true in that child.
sub fork_stage {
  my ($req) = @_;
  pipe(my $lr, my $lw) or return 0;
  my $pid = fork();
  return 0 unless defined $pid;
  if ($pid) {
    close $lr;
    push @nested_w, $lw;
    return 0;
  }
  close $lw;
  close $_ for @nested_w;
  @nested_w = ();
  for my $h ($sel->handles) { close $h unless $h == \*STDIN }
  %conn_of = (); %pid_of = (); %buf = ();
  pipe($wake_r, $wake_w) or exit 1;
  $wake_w->autoflush(1);
  $main::STAGE_PID = $$;
  $lifeline = $lr;
  become_stage($req->{name}, $req->{socket}, $req->{inc} || [], $req->{preload} || []);
  $sel = IO::Select->new($listen, $wake_r, $lifeline);
  return 1;
}

sub spawn_child {
  my ($conn, $req) = @_;
  my @fds;
  for my $path (@{ $req->{fds} || [] }) {
    my $mode = @fds == 0 ? '<' : '>';
    open(my $fh, $mode, $path) or return "cannot open $path: $!";
    push @fds, $fh;
  }
  my $pid = fork();
  return "fork: $!" unless defined $pid;
  if ($pid == 0) {
    POSIX::setpgid(0, 0);
    $SIG{$_} = 'DEFAULT' for qw(CHLD PIPE TERM INT USR2);
    for my $h ($sel->handles) { close $h unless $h == \*STDIN }
    close $wake_w;
    close $_ for @nested_w;
    # The placeholders go first: no handle of ours may own (and one day
    # close) an fd the test's are put on.
    close $_ for @reserved;
    @reserved = ();
    POSIX::dup2(fileno($fds[$_]), $_) for 0 .. $#fds;
    close $_ for @fds;
    # STDIN, STDOUT and STDERR are fds 0-2: the test's now.
    STDOUT->autoflush(1); STDERR->autoflush(1);
    %ENV = map { /^([^=]*)=(.*)$/s ? ($1 => $2) : () } @{ $req->{env} || [] };
    chdir $req->{cwd} if defined $req->{cwd} && length $req->{cwd};
    srand();
    # A test framework loaded in the stage writes to the handles it saw
    # then: it starts again on ours.
    if (defined &Test2::API::test2_post_preload_reset) {
      Test2::API::test2_stop_preload() if Test2::API::test2_in_preload();
      Test2::API::test2_post_preload_reset();  # (its handles: ours)
      # A formatter made while preloading writes where the stage did.
      my $hub = Test2::API::test2_stack()->top;
      my $f = $hub && $hub->format;
      if ($f && $f->can('set_handles') && $f->can('_open_handles')) {
        $f->set_handles($f->_open_handles);
        Test::Builder->new->{Orig_Handles} = [@{ $f->handles }] if defined &Test::Builder::new;
      }
    }

    # What a new perl does with PERL5LIB (the stage's own @INC stays).
    unshift @INC, grep { length } split /:/, $ENV{PERL5LIB} if defined $ENV{PERL5LIB};
    my @argv = @{ $req->{argv} };
    shift @argv if @argv && $argv[0] =~ m{(^|/)perl[\d.]*$};
    while (@argv && $argv[0] =~ /^-/) {
      my $opt = shift @argv;
      if ($opt =~ /^-I(.*)$/) { unshift @INC, length $1 ? $1 : shift @argv }
      elsif ($opt eq '--') { last }
    }
    my $file = shift @argv;
    @ARGV = @argv;
    $0 = $file;
    $ENV{WEFT_STAGE} = 'perl';
    unless (defined $file && -r $file) {
      print STDERR "Can't open perl script \"", $file // '', "\": ", ($! || 'no file named'), "\n";
      exit 2;
    }
    # "do" looks a relative path up in @INC; the test is a file here.
    my $path = $file =~ m{^\.{0,2}/} ? $file : "./$file";
    $@ = '';
    {
      package main;
      no strict;
      do $path;
    }
    if ($@) {
      print STDERR $@ =~ /\n\z/ ? $@ : "$@\n";
      exit 255;
    }
    exit 0;
  }
  close $_ for @fds;
  return $pid;
}

# The stage's own END: a child that called exit leaves here without
# global destruction (costly and pointless in a throwaway fork).
END {
  if ($$ != $main::STAGE_PID) {
    my $code = $?;
    # The files the test loaded beyond the stage's (weft watch reruns a
    # test when one of them changes), as a native "deps" event.
    if (($ENV{WEFT_EVENT_FD} // '') eq '3' && open(my $ev, '>&=', 3)) {
      my @deps = sort grep { !$preloaded{$_} }
        map { File::Spec->rel2abs($_) } grep { defined && !ref } values %INC;
      print $ev '{"type":"deps","files":[', join(',', map { json_str($_) } @deps), "]}\n";
      close $ev;
    }
    close STDOUT; close STDERR;
    POSIX::_exit($code);
  }
}
BEGIN { $main::STAGE_PID = $$ }

LOOP: while ($running) {
  if ($draining) {
    if ($listen) {
      $sel->remove($listen);
      close $listen;
      undef $listen;
      unlink $socket_path;
    }
    last unless %conn_of;
  }
  my @ready = $sel->can_read;
  for my $fh (@ready) {
    if ($listen && $fh == $listen) {
      my $c = $listen->accept or next;
      $sel->add($c);
      $buf{fileno $c} = '';
    } elsif ($fh == $wake_r) {
      sysread $wake_r, my $junk, 4096;
      while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
        my $status = $?;
        my $c = delete $conn_of{$pid} or next;
        delete $pid_of{fileno $c};
        syswrite $c, json_out(t => 'exited', pid => $pid, status => $status);
      }
    } elsif ($fh == $lifeline) {
      # The runner (or the stage we came from) is gone: we end.
      my $n = sysread $lifeline, my $b, 65536;
      if (!$n) {
        # (Draining, our tests finish first: each ends with its auditor.)
        if ($draining) { $sel->remove($lifeline); next }
        $running = 0;
        next;
      }
      $commands .= $b;
      while ($commands =~ s/^([^\n]*)\n//) {
        my $req = eval { json_in($1) };
        next unless $req && ($req->{t} // '') eq 'fork_stage';
        next LOOP if fork_stage($req);  # (we are that stage now)
      }
    } else {
      my $n = sysread $fh, my $data, 65536;
      if (!$n) {
        # The auditor is gone: its test goes too.
        if (my $pid = delete $pid_of{fileno $fh}) {
          kill 'KILL', -$pid;
          delete $conn_of{$pid};
        }
        $sel->remove($fh);
        delete $buf{fileno $fh};
        close $fh;
        next;
      }
      $buf{fileno $fh} .= $data;
      if ($buf{fileno $fh} =~ s/^([^\n]*)\n//) {
        my $line = $1;
        my $req = eval { json_in($line) };
        my $pid = $req ? spawn_child($fh, $req) : "bad request: $@";
        if ($pid =~ /^\d+$/) {
          $conn_of{$pid} = $fh;
          $pid_of{fileno $fh} = $pid;
          syswrite $fh, json_out(t => 'spawned', pid => $pid);
        } else {
          syswrite $fh, json_out(t => 'error', message => $pid);
        }
      }
    }
  }
}
# Stopping: the children still running go with us (and the stages forked
# from us see their pipe end).
kill 'KILL', -$_ for keys %conn_of;
close $_ for @nested_w;
unlink $socket_path if $listen;
exit 0;
