# Proves that the public API reaches nothing internal. The compiler lists
# (-M) every header test/public_api/consumer.cc includes, directly or not,
# with include/ as the only project include directory, and the check fails
# on any header of Boost (Asio, Beast) or of the repository's engine/, net/,
# plugin/ or tools/. The include path alone cannot prove the first: Boost
# lives in /usr/include, which the compiler searches anyway.
#   cmake -DCXX=<compiler> -DSOURCE_DIR=<repository> -P check_deps.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var CXX SOURCE_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_deps.cmake: -D${var}=... is required")
  endif()
endforeach()
file(REAL_PATH "${SOURCE_DIR}" root)
set(consumer "${root}/test/public_api/consumer.cc")

execute_process(
  COMMAND "${CXX}" -std=c++20 -M -I "${root}/include" "${consumer}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE rule ERROR_VARIABLE errors)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the compiler cannot list the headers of ${consumer} "
                      "with -I ${root}/include alone:\n${errors}")
endif()

# "consumer.o: consumer.cc a.h \<newline> b.h ...": the prerequisites.
string(REPLACE "\\\n" " " rule "${rule}")
string(REGEX REPLACE "^[^:]*:" "" rule "${rule}")
separate_arguments(headers UNIX_COMMAND "${rule}")

set(internal "")
set(reached "")
foreach(header IN LISTS headers)
  file(REAL_PATH "${header}" path)
  list(APPEND reached "${path}")
  if(path MATCHES "/boost/")
    list(APPEND internal "${path}")
  endif()
  foreach(dir engine net plugin tools)
    string(FIND "${path}" "${root}/${dir}/" at)
    if(at EQUAL 0)
      list(APPEND internal "${path}")
    endif()
  endforeach()
endforeach()

# Not vacuous: every public header must be among those listed.
foreach(name follower master options replica_reader status)
  if(NOT "${root}/include/sdiff/${name}.h" IN_LIST reached)
    message(FATAL_ERROR "${consumer} does not reach include/sdiff/${name}.h")
  endif()
endforeach()

if(internal)
  list(REMOVE_DUPLICATES internal)
  list(JOIN internal "\n  " listed)
  message(FATAL_ERROR "the public API reaches internal headers:\n  ${listed}")
endif()
list(LENGTH reached count)
message(STATUS "consumer.cc reaches ${count} headers, none of them internal")
