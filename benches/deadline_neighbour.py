# Neighbour latency while 1 request in 50 runs into the deadline (issue 20), against the same
# load with none. Bounded: four 10 s rounds on loopback. Usage:
#   python3 benches/deadline_neighbour.py PATH/TO/weft PATH/TO/p3-unruly.wasm
import socket, threading, time, subprocess, sys, re
G=sys.argv[2] if len(sys.argv) > 2 else "p3-unruly.wasm"
def req(port, path, timeout=10):
    s=socket.create_connection(("127.0.0.1",port),timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data=b""
    while True:
        try:
            b=s.recv(65536)
        except Exception: break
        if not b: break
        data+=b
    s.close(); return data[:12]
def run(hangs, port, secs=10, threads=4):
    p=subprocess.Popen([sys.argv[1] if len(sys.argv) > 1 else "weft","serve","--addr",f"127.0.0.1:{port}","--timeout","1s",G],stderr=subprocess.DEVNULL,stdout=subprocess.DEVNULL,env={"PATH":"/usr/bin:/bin"})
    for _ in range(100):
        try: req(port,"/count"); break
        except Exception: time.sleep(0.2)
    lat=[]; statuses={}; hang_n=[0]; lock=threading.Lock(); end=time.time()+secs
    def worker():
        i=0
        while time.time()<end:
            i+=1
            if hangs and i%50==0:
                hang_n[0]+=1
                threading.Thread(target=req,args=(port,"/hang")).start()
                continue
            t=time.perf_counter(); r=req(port,"/count"); d=time.perf_counter()-t
            with lock:
                lat.append(d); statuses[r[9:12]]=statuses.get(r[9:12],0)+1
    ts=[threading.Thread(target=worker) for _ in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    time.sleep(1.5); p.terminate(); p.wait()
    lat.sort(); n=len(lat)
    q=lambda x: lat[min(n-1,int(x*n))]*1000
    print(f"hangs={'1 in 50' if hangs else 'none'} requests={n} runaway={hang_n[0]} p50={q(.5):.2f}ms p99={q(.99):.2f}ms max={lat[-1]*1000:.1f}ms statuses={ {k.decode():v for k,v in statuses.items()} }",flush=True)
run(False, 18941); run(True, 18942); run(False, 18943); run(True, 18944)
