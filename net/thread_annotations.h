// Clang's thread-safety annotations (-Wthread-safety), as LevelDB's
// port/thread_annotations.h spells them: a field marked GUARDED_BY(mu_) and
// read without mu_ held, or a function marked REQUIRES(mu_) called without
// it, is a compile error in the clang build (./run test builds it). Other
// compilers see nothing. The mutex they name is a net::Mutex (net/mutex.h).
#pragma once

#if defined(__clang__)
#define SDIFF_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SDIFF_THREAD_ANNOTATION(x)
#endif

#ifndef CAPABILITY
#define CAPABILITY(x) SDIFF_THREAD_ANNOTATION(capability(x))
#endif
#ifndef SCOPED_CAPABILITY
#define SCOPED_CAPABILITY SDIFF_THREAD_ANNOTATION(scoped_lockable)
#endif
#ifndef GUARDED_BY
#define GUARDED_BY(x) SDIFF_THREAD_ANNOTATION(guarded_by(x))
#endif
#ifndef ACQUIRE
#define ACQUIRE(...) SDIFF_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#endif
#ifndef RELEASE
#define RELEASE(...) SDIFF_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#endif
#ifndef REQUIRES
#define REQUIRES(...) SDIFF_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#endif
#ifndef EXCLUDES
#define EXCLUDES(...) SDIFF_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#endif
#ifndef ASSERT_CAPABILITY
#define ASSERT_CAPABILITY(x) SDIFF_THREAD_ANNOTATION(assert_capability(x))
#endif
#ifndef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS SDIFF_THREAD_ANNOTATION(no_thread_safety_analysis)
#endif
