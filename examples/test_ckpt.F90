! test_ckpt.F90: free-form Fortran that checkpoints through SCR's Fortran
! interface, with SCR_NEED_CHECKPOINT, SCR_START_CHECKPOINT (datasets get
! SCR's default names; the step is the data's first element) and
! SCR_SHOULD_EXIT.
!   mpif90 -o test_ckpt_f90 test_ckpt.F90 -I<prefix>/include \
!          -L<prefix>/lib -lscrf -lscr
program test_ckpt_f90
  implicit none
  include 'mpif.h'
  include 'scrf.h'
  integer, parameter :: n = 4096
  real(kind=8) :: w(n), r(n)
  character(len=SCR_MAX_FILENAME) :: ckpt, fname, path, version, value
  integer :: ierr, rank, flag, valid, step, first, ios, bad, need, stop_now

  call MPI_Init(ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  bad = 0
  call SCR_CONFIG('SCR_CHECKPOINT_INTERVAL=1', value, ierr)
  call SCR_INIT(ierr)
  if (ierr /= SCR_SUCCESS) bad = bad + 1
  call SCR_CONFIG('SCR_CHECKPOINT_INTERVAL', value, ierr)
  if (trim(value) /= '1') then
    print '(a,a)', 'SCR_CONFIG query gave ', trim(value)
    bad = bad + 1
  end if
  call SCR_GET_VERSION(version, ierr)
  if (rank == 0) print '(a,a)', 'SCR version ', trim(version)

  first = 1
  call SCR_HAVE_RESTART(flag, ckpt, ierr)
  if (flag == 1) then
    call SCR_START_RESTART(ckpt, ierr)
    write (fname, '(a,i0,a)') 'ckpt/part_', rank, '.dat'
    call SCR_ROUTE_FILE(fname, path, ierr)
    valid = 0
    open (unit=20, file=path, form='unformatted', action='read', status='old', iostat=ios)
    if (ios == 0) then
      read (20, iostat=ios) r
      close (20)
      step = int(r(1))
      call fill(w, step)
      if (ios == 0 .and. all(r == w)) valid = 1
    end if
    call SCR_COMPLETE_RESTART(valid, ierr)
    if (ierr == SCR_SUCCESS) then
      if (rank == 0) print '(a,a)', 'restarted from ', trim(ckpt)
      first = step + 1
    else
      bad = bad + 1
    end if
  end if

  do step = first, first + 2
    call SCR_NEED_CHECKPOINT(need, ierr)
    if (need /= 1) cycle
    call SCR_START_CHECKPOINT(ierr)
    write (ckpt, '(a,i0)') 'step ', step
    write (fname, '(a,i0,a)') 'ckpt/part_', rank, '.dat'
    call SCR_ROUTE_FILE(fname, path, ierr)
    call fill(w, step)
    open (unit=21, file=path, form='unformatted', action='write', status='replace', iostat=ios)
    if (ios == 0) write (21, iostat=ios) w
    close (21)
    valid = merge(1, 0, ios == 0)
    call SCR_COMPLETE_CHECKPOINT(valid, ierr)
    if (ierr /= SCR_SUCCESS) bad = bad + 1
    if (rank == 0) print '(a,a,a)', 'checkpoint ', trim(ckpt), ' written'
    call SCR_SHOULD_EXIT(stop_now, ierr)
    if (stop_now == 1) exit
  end do

  call SCR_FINALIZE(ierr)
  call MPI_Finalize(ierr)
  if (bad /= 0) call exit(1)

contains

  subroutine fill(a, s)
    real(kind=8), intent(out) :: a(n)
    integer, intent(in) :: s
    integer :: i
    do i = 1, n
      a(i) = rank * 1.0d6 + s * 1.0d3 + i / 3.0d0
    end do
    a(1) = s
  end subroutine fill

end program test_ckpt_f90
